/*
 * sqlite_workload: a realistic SQL workload on the SQLite amalgamation, for the
 * runtime's exactness test and benchmark (test/examples/sqlite.test.ts,
 * bench/runtime.ts). Deterministic: an in-memory database, values from an LCG,
 * no clock, the PRNG seeded, lookaside off (so heap layout cannot steer the path). Prints a
 * checksum of every result row.
 *   sqlite_workload [scale]      rows = 1000 * scale
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite3.h"

static unsigned long long sum;

static int row(void *arg, int n, char **v, char **names) {
  (void)arg;
  (void)names;
  for (int i = 0; i < n; i++)
    for (const char *p = v[i] ? v[i] : "NULL"; *p; p++) sum = sum * 131 + (unsigned char)*p;
  return 0;
}

static void exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, row, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "sqlite_workload: %s: %s\n", sql, err);
    exit(1);
  }
}

int main(int argc, char **argv) {
  int scale = argc > 1 ? atoi(argv[1]) : 1;
  if (scale < 1) return 2;
  sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0);
  /* The PRNG (VACUUM's temporary schema name, ...) from a fixed seed, not from /dev/urandom */
  sqlite3_initialize();
  sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, 1, NULL);
  sqlite3 *db;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
  sqlite3_db_config(db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 0, 0);
  exec(db, "PRAGMA cache_size=-4000");
  exec(db, "CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, balance REAL)");
  exec(db, "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customer(id), item TEXT, qty INTEGER, price REAL, note BLOB)");
  exec(db, "CREATE INDEX orders_customer ON orders(customer)");
  exec(db, "CREATE INDEX customer_city ON customer(city, name)");
  static const char *cities[] = { "Lisbon", "Oslo", "Kyoto", "Lima", "Accra", "Perth", "Quito", "Turku" };
  static const char *items[] = { "bolt", "nut", "gear", "spring", "valve", "pipe", "wire", "cog", "lever", "seal" };
  unsigned long long x = 42;
  sqlite3_stmt *ins;
  exec(db, "BEGIN");
  sqlite3_prepare_v2(db, "INSERT INTO customer(name, city, balance) VALUES(?, ?, ?)", -1, &ins, NULL);
  int ncust = 200 * scale;
  for (int i = 0; i < ncust; i++) {
    char name[32];
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    snprintf(name, sizeof name, "c%05d-%llx", i, (x >> 40) & 0xfff);
    sqlite3_bind_text(ins, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(ins, 2, cities[(x >> 33) % 8], -1, SQLITE_STATIC);
    sqlite3_bind_double(ins, 3, (double)((x >> 20) % 100000) / 100.0);
    sqlite3_step(ins);
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  sqlite3_prepare_v2(db, "INSERT INTO orders(customer, item, qty, price, note) VALUES(?, ?, ?, ?, ?)", -1, &ins, NULL);
  for (int i = 0; i < 1000 * scale; i++) {
    unsigned char note[24];
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int j = 0; j < 24; j++) note[j] = (unsigned char)(x >> (j % 8 * 8));
    sqlite3_bind_int(ins, 1, (int)((x >> 35) % (unsigned long long)ncust) + 1);
    sqlite3_bind_text(ins, 2, items[(x >> 29) % 10], -1, SQLITE_STATIC);
    sqlite3_bind_int(ins, 3, (int)((x >> 13) % 50) + 1);
    sqlite3_bind_double(ins, 4, (double)((x >> 7) % 5000) / 10.0);
    sqlite3_bind_blob(ins, 5, note, (int)(x % 24), SQLITE_TRANSIENT);
    sqlite3_step(ins);
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  exec(db, "COMMIT");
  exec(db, "SELECT city, count(*), round(sum(balance), 2) FROM customer GROUP BY city ORDER BY city");
  exec(db, "SELECT c.city, o.item, sum(o.qty), round(avg(o.price), 3) FROM orders o JOIN customer c ON c.id = o.customer "
           "GROUP BY c.city, o.item HAVING sum(o.qty) > 10 ORDER BY 3 DESC, 1, 2 LIMIT 40");
  exec(db, "SELECT name, total FROM (SELECT c.name, sum(o.qty * o.price) AS total FROM customer c JOIN orders o ON o.customer = c.id "
           "GROUP BY c.id) ORDER BY total DESC LIMIT 15");
  exec(db, "SELECT item, qty, rank() OVER (PARTITION BY item ORDER BY qty DESC, id) FROM orders WHERE id % 17 = 0 ORDER BY item, 3 LIMIT 100");
  exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
           "SELECT count(*), sum(i * i) FROM n WHERE i NOT IN (SELECT qty FROM orders)");
  exec(db, "SELECT city, group_concat(name, ',') FROM (SELECT city, name FROM customer WHERE name LIKE 'c00%' ORDER BY name) GROUP BY city");
  exec(db, "BEGIN");
  exec(db, "UPDATE customer SET balance = balance * 1.05 WHERE city IN ('Oslo', 'Lima')");
  exec(db, "UPDATE orders SET qty = qty + 1 WHERE item = 'gear' AND price > 100");
  exec(db, "DELETE FROM orders WHERE id % 7 = 0");
  exec(db, "COMMIT");
  exec(db, "CREATE TABLE summary AS SELECT customer, count(*) AS n, max(price) AS top FROM orders GROUP BY customer");
  exec(db, "SELECT count(*), sum(n), round(max(top), 1) FROM summary");
  exec(db, "SELECT hex(substr(note, 1, 4)), length(note) FROM orders WHERE length(note) > 20 ORDER BY id LIMIT 20");
  exec(db, "SELECT upper(item), lower(city), printf('%08.3f', price) FROM orders JOIN customer ON customer.id = orders.customer "
           "WHERE orders.id BETWEEN 100 AND 160 ORDER BY orders.id");
  exec(db, "ANALYZE");
  exec(db, "SELECT count(*) FROM orders INDEXED BY orders_customer WHERE customer BETWEEN 10 AND 90");
  exec(db, "PRAGMA integrity_check");
  exec(db, "DROP TABLE summary");
  exec(db, "VACUUM");
  sqlite3_close(db);
  printf("sqlite_workload: scale %d checksum %016llx\n", scale, sum);
  return 0;
}
