-- bench/db/run.py: what GET /db asks PostgreSQL: one row by a random id.
\set id random(1, 10000)
SELECT id, randomnumber FROM world WHERE id = :id;
