"""The store's records: appending a session's records and reading them back as long tables.
Mixed into `Store` (its connection and run ids)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import pandas as pd

from ..records import FilterRow, LayerRow, Record, Row, Scalar
from .db import RECORD_TABLES


class RecordsMixin:
    """Store methods for a run's records."""

    def write(self, run_id: str, records: Iterable[Record], *, step: int | None = None) -> None:
        """Append records (one transaction) and refresh the run's heartbeat and progress."""
        rid = self._rid(run_id)
        buckets: dict[str, list[tuple]] = {t: [] for t in RECORD_TABLES}
        for r in records:
            if isinstance(r, Scalar):
                buckets["scalars"].append((rid, r.step, r.epoch, r.key, r.value))
            elif isinstance(r, LayerRow):
                buckets["layers"].append((rid, r.step, r.epoch, r.layer, r.key, r.value))
            elif isinstance(r, FilterRow):
                buckets["filters"].append((rid, r.step, r.epoch, r.layer, r.filter, r.key,
                                           r.value))
            elif isinstance(r, Row):
                buckets["rows"].append((rid, r.step, r.epoch, r.table,
                                        json.dumps(r.data, default=float)))
        with self._tx() as c:
            c.executemany("INSERT INTO scalars VALUES (?,?,?,?,?)", buckets["scalars"])
            c.executemany("INSERT INTO layers VALUES (?,?,?,?,?,?)", buckets["layers"])
            c.executemany("INSERT INTO filters VALUES (?,?,?,?,?,?,?)", buckets["filters"])
            c.executemany("INSERT INTO rows VALUES (?,?,?,?,?)", buckets["rows"])
            c.execute("UPDATE runs SET heartbeat=?, step=COALESCE(?, step) WHERE id=?",
                      (time.time(), step, rid))


    def _read(self, table: str, cols: str, run_ids: str | list[str], keys: list[str] | None,
              extra: str = "", args: tuple = ()) -> pd.DataFrame:
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        rids = {self._rid(r): r for r in ids}
        sql = (f"SELECT rid, {cols} FROM {table} WHERE rid IN ({','.join('?' * len(rids))})"
               f"{extra}")
        params: tuple = (*rids, *args)
        if keys is not None:
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            params += tuple(keys)
        df = pd.read_sql_query(sql + " ORDER BY rid, step", self._conn(), params=params)
        df.insert(0, "run_id", df.pop("rid").map(rids))
        return df

    def scalars(self, run_ids: str | list[str], keys: list[str] | None = None, *,
                max_points: int | None = None) -> pd.DataFrame:
        """Long table run_id, step, epoch, key, value; `max_points` thins each (run, key) curve
        to about that many evenly spaced steps (the last step always kept)."""
        if max_points is None:
            return self._read("scalars", "step, epoch, key, value", run_ids, keys)
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        conn, rows = self._conn(), []
        for run_id in ids:
            rid = self._rid(run_id)
            where, args = "rid=?", [rid]
            if keys is not None:
                where += f" AND key IN ({','.join('?' * len(keys))})"
                args += list(keys)
            counts = conn.execute(f"SELECT key, COUNT(*), MIN(step), MAX(step) FROM scalars "
                                  f"WHERE {where} GROUP BY key", args).fetchall()
            for key, n, first, last in counts:
                stride = max(1, -(-n // max_points))
                if n == last - first + 1:
                    # One value per step (most curves): thin by step arithmetic along the
                    # index, 10x cheaper than numbering rows with a window function.
                    sql = ("SELECT step, epoch, key, value FROM scalars WHERE rid=? AND key=? "
                           "AND ((step - ?) % ? = 0 OR step = ?) ORDER BY step")
                    params: tuple = (rid, key, first, stride, last)
                else:
                    sql = ("SELECT step, epoch, key, value FROM (SELECT step, epoch, key, "
                           "value, ROW_NUMBER() OVER (ORDER BY step) - 1 AS i FROM scalars "
                           "WHERE rid=? AND key=?) WHERE i % ? = 0 OR step = ? ORDER BY step")
                    params = (rid, key, stride, last)
                rows += [(run_id, *r) for r in conn.execute(sql, params).fetchall()]
        return pd.DataFrame(rows, columns=["run_id", "step", "epoch", "key", "value"])

    def scalar_counts(self, run_ids: str | list[str]) -> pd.DataFrame:
        """run_id, key, n: how many values of each scalar each run recorded (one query)."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        rids = {self._rid(r): r for r in ids}
        if not rids:
            return pd.DataFrame({"run_id": [], "key": [], "n": []})
        df = pd.read_sql_query(
            f"SELECT rid, key, COUNT(*) AS n FROM scalars WHERE rid IN "
            f"({','.join('?' * len(rids))}) GROUP BY rid, key", self._conn(), params=list(rids))
        df.insert(0, "run_id", df.pop("rid").map(rids))
        return df

    def scalar_keys(self, run_ids: str | list[str]) -> list[str]:
        """The scalar keys any of the runs recorded, sorted."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        rids = [self._rid(r) for r in ids]
        rows = self._conn().execute(
            f"SELECT DISTINCT key FROM scalars WHERE rid IN ({','.join('?' * len(rids))}) "
            f"ORDER BY key", rids).fetchall()
        return [r[0] for r in rows]

    def layers(self, run_ids: str | list[str], keys: list[str] | None = None) -> pd.DataFrame:
        """Long table run_id, step, epoch, layer, key, value."""
        return self._read("layers", "step, epoch, layer, key, value", run_ids, keys)

    def filters(self, run_ids: str | list[str], keys: list[str] | None = None, *,
                layer: str | None = None) -> pd.DataFrame:
        """Long table run_id, step, epoch, layer, filter, key, value."""
        extra, args = (" AND layer = ?", (layer,)) if layer else ("", ())
        return self._read("filters", "step, epoch, layer, filter, key, value", run_ids, keys,
                          extra, args)

    def rows(self, run_ids: str | list[str], table: str, *, after: int | None = None
             ) -> pd.DataFrame:
        """A method table: run_id, step, epoch and one column per field the method recorded;
        `after` keeps the rows of later steps only (a live view reads just what is new)."""
        extra, args = " AND tbl = ?", (table,)
        if after is not None:
            extra, args = extra + " AND step > ?", (table, after)
        df = self._read("rows", "step, epoch, data", run_ids, None, extra, args)
        # One json.loads over the joined rows: half the time of one call per row.
        data = pd.DataFrame(json.loads("[" + ",".join(df.pop("data")) + "]"), index=df.index)
        return pd.concat([df, data], axis=1)

    def tables(self, run_id: str) -> list[str]:
        """Names of the method tables a run recorded."""
        rows = self._conn().execute("SELECT DISTINCT tbl FROM rows WHERE rid=? ORDER BY tbl",
                                    (self._rid(run_id),)).fetchall()
        return [r[0] for r in rows]
