-- Added for sluice's embedded broker: the headers of a partition's records from offset $4
-- to $5 (inclusive), in record order, for the PostgreSQL fetch to read with one query.

select h.offset_id, h.k, h.v
from header h
join topition tp on tp.id = h.topition
join topic t on tp.topic = t.id
join cluster c on t.cluster = c.id
where c.name = $1
and t.name = $2
and tp.partition = $3
and h.offset_id >= $4
and h.offset_id <= $5
order by h.offset_id, h.k;
