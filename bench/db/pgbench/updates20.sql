-- bench/db/run.py: what GET /updates?queries=20 asks PostgreSQL: 20 rows read in one
-- pipeline, then all of them written with one UPDATE, as examples/techempower
-- does (its statement takes two int[] parameters; pgbench has no array
-- variables, so the same arrays are built here with ARRAY[...] from 20
-- parameters each). The ids are distinct and ascending (one random id in each
-- 1/20 of the table), as the plugin sorts its rows, so that concurrent
-- clients lock rows in the same order and never deadlock.
\set id1 random(1, 500)
\set id2 random(501, 1000)
\set id3 random(1001, 1500)
\set id4 random(1501, 2000)
\set id5 random(2001, 2500)
\set id6 random(2501, 3000)
\set id7 random(3001, 3500)
\set id8 random(3501, 4000)
\set id9 random(4001, 4500)
\set id10 random(4501, 5000)
\set id11 random(5001, 5500)
\set id12 random(5501, 6000)
\set id13 random(6001, 6500)
\set id14 random(6501, 7000)
\set id15 random(7001, 7500)
\set id16 random(7501, 8000)
\set id17 random(8001, 8500)
\set id18 random(8501, 9000)
\set id19 random(9001, 9500)
\set id20 random(9501, 10000)
\set r1 random(1, 10000)
\set r2 random(1, 10000)
\set r3 random(1, 10000)
\set r4 random(1, 10000)
\set r5 random(1, 10000)
\set r6 random(1, 10000)
\set r7 random(1, 10000)
\set r8 random(1, 10000)
\set r9 random(1, 10000)
\set r10 random(1, 10000)
\set r11 random(1, 10000)
\set r12 random(1, 10000)
\set r13 random(1, 10000)
\set r14 random(1, 10000)
\set r15 random(1, 10000)
\set r16 random(1, 10000)
\set r17 random(1, 10000)
\set r18 random(1, 10000)
\set r19 random(1, 10000)
\set r20 random(1, 10000)
\startpipeline
SELECT id, randomnumber FROM world WHERE id = :id1;
SELECT id, randomnumber FROM world WHERE id = :id2;
SELECT id, randomnumber FROM world WHERE id = :id3;
SELECT id, randomnumber FROM world WHERE id = :id4;
SELECT id, randomnumber FROM world WHERE id = :id5;
SELECT id, randomnumber FROM world WHERE id = :id6;
SELECT id, randomnumber FROM world WHERE id = :id7;
SELECT id, randomnumber FROM world WHERE id = :id8;
SELECT id, randomnumber FROM world WHERE id = :id9;
SELECT id, randomnumber FROM world WHERE id = :id10;
SELECT id, randomnumber FROM world WHERE id = :id11;
SELECT id, randomnumber FROM world WHERE id = :id12;
SELECT id, randomnumber FROM world WHERE id = :id13;
SELECT id, randomnumber FROM world WHERE id = :id14;
SELECT id, randomnumber FROM world WHERE id = :id15;
SELECT id, randomnumber FROM world WHERE id = :id16;
SELECT id, randomnumber FROM world WHERE id = :id17;
SELECT id, randomnumber FROM world WHERE id = :id18;
SELECT id, randomnumber FROM world WHERE id = :id19;
SELECT id, randomnumber FROM world WHERE id = :id20;
\endpipeline
UPDATE world SET randomnumber = v.r FROM (SELECT unnest(ARRAY[:id1, :id2, :id3, :id4, :id5, :id6, :id7, :id8, :id9, :id10, :id11, :id12, :id13, :id14, :id15, :id16, :id17, :id18, :id19, :id20]::int[]) AS id, unnest(ARRAY[:r1, :r2, :r3, :r4, :r5, :r6, :r7, :r8, :r9, :r10, :r11, :r12, :r13, :r14, :r15, :r16, :r17, :r18, :r19, :r20]::int[]) AS r) AS v WHERE world.id = v.id;
