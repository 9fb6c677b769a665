-- Added for sluice's embedded broker (DeleteRecords): the headers of a partition's records
-- before offset $4.

delete from header
where topition = (
    select tp.id
    from cluster c
    join topic t on t.cluster = c.id
    join topition tp on tp.topic = t.id
    where c.name = $1
    and t.name = $2
    and tp.partition = $3
)
and offset_id < $4;
