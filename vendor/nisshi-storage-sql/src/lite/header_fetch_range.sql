-- -*- mode: sql; sql-product: sqlite; -*-
-- Added for sluice's embedded broker: the headers of a partition's records from offset $4
-- to $5 (inclusive), in record order and, within a record, in ordinal order, read from the
-- header table's primary key. sql/header_fetch_range.sql is PostgreSQL's, which takes the
-- offsets as an array.

select h.offset_id, h.k, h.v
from header h
where h.topition = (
    select tp.id
    from cluster c
    join topic t on t.cluster = c.id
    join topition tp on tp.topic = t.id
    where c.name = $1
    and t.name = $2
    and tp.partition = $3)
and h.offset_id >= $4
and h.offset_id <= $5
order by h.offset_id, h.ordinal;
