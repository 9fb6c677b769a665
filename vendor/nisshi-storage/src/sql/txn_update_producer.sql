-- Added for sluice's embedded broker (InitProducerId): a transaction whose producer ran out of
-- epochs moves to a new producer.

update txn
set producer = $3, last_updated = current_timestamp
where cluster = (select c.id from cluster c where c.name = $1)
and name = $2;
