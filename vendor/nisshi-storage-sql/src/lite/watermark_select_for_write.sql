-- -*- mode: sql; sql-product: postgres; -*-
-- Copyright ⓒ 2024-2026 Peter Morgan <peter.james.morgan@gmail.com>
--
-- Licensed under the Apache License, Version 2.0 (the "License");
-- you may not use this file except in compliance with the License.
-- You may obtain a copy of the License at
--
-- http://www.apache.org/licenses/LICENSE-2.0
--
-- Unless required by applicable law or agreed to in writing, software
-- distributed under the License is distributed on an "AS IS" BASIS,
-- WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
-- See the License for the specific language governing permissions and
-- limitations under the License.

-- SQLite has no row locks, so this query locks nothing. A write transaction
-- holds the database's write lock instead.
-- sql/watermark_select_for_write.sql must select the same columns.

select

w.low, w.high, tc.value as max_message_bytes

from

cluster c
join topic t on t.cluster = c.id
join topition tp on tp.topic = t.id
join watermark w on w.topition = tp.id
left join topic_configuration tc
on tc.topic = t.id and tc.name = 'max.message.bytes'

where

c.name = $1
and t.name = $2
and tp.partition = $3;
