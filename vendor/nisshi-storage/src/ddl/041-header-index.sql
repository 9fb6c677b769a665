-- Added for sluice's embedded broker: a fetch reads the headers of its records by
-- (topition, offset_id); without this index every read scanned the whole table.
create index if not exists header_topition_offset on header (topition, offset_id);
