-- bench/db/run.py: what GET /fortunes asks PostgreSQL: the whole fortune table.
SELECT id, message FROM fortune;
