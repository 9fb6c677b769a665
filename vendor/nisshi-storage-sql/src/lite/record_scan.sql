-- -*- mode: sql; sql-product: sqlite; -*-
-- Added for sluice's embedded broker: the records of a partition from offset $4 up to $5
-- (exclusive), in offset order. Unlike record_fetch.sql, which sums the sizes of every
-- record up to the high watermark before it returns the first one, the rows come from a
-- scan of the record table's primary key that the caller stops once it has its bytes. The
-- topition id is looked up in a scalar subquery, so that the scan is ordered by offset
-- without a sort. The sixth column is unused; it keeps the columns where record_fetch.sql
-- has them.

select

r.offset_id,
r.attributes,
r.timestamp,
r.k,
r.v,
0,
r.producer_id,
r.producer_epoch

from

record r

where

r.topition = (
    select tp.id
    from cluster c
    join topic t on t.cluster = c.id
    join topition tp on tp.topic = t.id
    where c.name = $1
    and t.name = $2
    and tp.partition = $3)
and r.offset_id >= $4
and r.offset_id < $5

order by r.offset_id;
