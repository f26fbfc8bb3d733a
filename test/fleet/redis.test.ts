/**
 * The fleet against a real redis-server (Debian's package): two kcovd
 * instances share one union; Redis stopped and restarted empty mid-test loses
 * nothing. CI installs redis-server (.ci/run); there a missing one fails.
 */
import t from 'tap';
import { json, makeApp, pcs } from '../helpers.js';
import { RedisServer } from './servers.js';
import { fleetStatus, need, takeNew, tracing, unionOf, until } from './common.js';

const have = need('redis-server');

t.test('two instances on one Redis', { skip: have ? false : 'redis-server not installed (not CI)' }, async (t) => {
  const redis = await RedisServer.create();
  t.teardown(() => redis.destroy());
  await redis.start();
  const env = { KCOV_FLEET_URL: redis.url, KCOV_FLEET_FLUSH_MS: '10', KCOV_FLEET_TIMEOUT_MS: '1000' };
  const A = await makeApp(t, env);
  const B = await makeApp(t, env);
  await until('A connected', async () => (await fleetStatus(A)).connected);
  await until('B connected', async () => (await fleetStatus(B)).connected);
  const a = await tracing(A, 1);
  const b = await tracing(B, 1);

  t.test('a PC posted to A is not new on B', async (t) => {
    await a.c.binary(1, pcs(0x10, 0x20));
    // A pushes within a flush interval without anyone reading its area.
    await until('B sees A\'s PCs', async () => {
      const u = await unionOf(b.c);
      return u.source === 'fleet' && u.pcs.includes('0x20');
    });
    await b.c.binary(1, pcs(0x20, 0x30));
    const nb = json(await b.c.coverage(b.fd, 'application/json', '?new=true&reset=true'));
    t.same(nb.pcs, ['0x30'], 'B: 0x20 was found first by A');
    t.equal(nb.seen, 1);
    const na = json(await a.c.coverage(a.fd, 'application/json', '?new=true&reset=true'));
    t.same(na.pcs, ['0x10', '0x20'], 'A: still new for the instance that found them');
    await a.c.binary(1, pcs(0x30));
    t.same(json(await a.c.coverage(a.fd, 'application/json', '?new=true&reset=true')).pcs, [], 'A: 0x30 was claimed by B');
    const u = await unionOf(a.c);
    t.same(u.pcs, ['0x10', '0x20', '0x30'], 'one union for both');
    t.equal(u.source, 'fleet');
  });

  t.test('/metrics: the fleet union per corpus, this instance\'s per kernel, round trips and lag', async (t) => {
    const body = (await A.inject({ method: 'GET', url: '/metrics' })).body;
    const value = (re: RegExp) => Number(re.exec(body)?.[1] ?? NaN);
    t.equal(value(/^kcovd_fleet_cover_pcs\{corpus="default"\} (\S+)$/m), 3, 'PCs of the corpus in Redis');
    t.equal(value(/^kcovd_fleet_cover_signal\{corpus="default"\} (\S+)$/m), (await unionOf(a.c)).signal, 'its signal');
    t.equal(value(/^kcovd_cover_pcs\{kernel="default"\} (\S+)$/m), 3, 'A knows all three (it learnt 0x30 from B)');
    t.ok(value(/^kcovd_cover_signal\{kernel="default"\} (\S+)$/m) > 0);
    t.equal(value(/^kcovd_cover_new_pcs_total\{kernel="default"\} (\S+)$/m), 2, 'A reported 0x10 and 0x20 new');
    t.ok(value(/^kcovd_cover_new_pcs_per_minute\{kernel="default"\} (\S+)$/m) >= 0);
    const trips = value(/^kcovd_fleet_round_trips_total (\S+)$/m);
    t.ok(trips > 0, 'round trips');
    const secs = value(/^kcovd_fleet_round_trip_seconds_total (\S+)$/m);
    t.ok(secs > 0 && secs / trips < 1, 'their time: a mean latency below a second');
    t.equal(value(/^kcovd_fleet_lag_seconds (\S+)$/m), 0, 'nothing pending: no lag');
    t.equal(value(/^kcovd_fleet_pending (\S+)$/m), 0);
    t.equal(value(/^kcovd_fleet_connected (\S+)$/m), 1);
    t.equal(value(/^kcovd_fleet_failures_total (\S+)$/m), 0);
  });

  t.test('Redis stopped mid-test and restarted empty: nothing lost', async (t) => {
    await a.c.binary(1, pcs(0x100));
    await until('0x100 in Redis', async () => (await unionOf(b.c)).pcs.includes('0x100'));
    await redis.stop();
    await until('A sees the outage', async () => !(await fleetStatus(A)).connected);
    // Both keep serving from their local unions.
    await a.c.binary(1, pcs(0x200));
    const na = json(await a.c.coverage(a.fd, 'application/json', '?new=true&reset=true'));
    t.same(na.pcs, ['0x100', '0x200'], 'A answers ?new locally');
    await b.c.binary(1, pcs(0x300));
    const ub = await unionOf(b.c);
    t.equal(ub.source, 'local', 'B says where its answer comes from');
    t.ok(ub.pcs.includes('0x300'));
    const ready = json(await B.inject({ method: 'GET', url: '/readyz' }));
    t.equal(ready.ready, true, 'still ready: serving from the local union');
    t.equal(ready.fleet.connected, false);
    t.ok(ready.fleet.pending > 0, 'what B learnt is pending');
    t.match((await B.inject({ method: 'GET', url: '/metrics' })).body, /kcovd_fleet_connected 0/);

    await redis.start(); // empty: --save ''
    await until('A and B back', async () => (await fleetStatus(A)).connected && (await fleetStatus(B)).connected);
    const all = ['0x10', '0x20', '0x30', '0x100', '0x200', '0x300'];
    const u = await until('the union complete again', async () => {
      const v = await unionOf(a.c);
      return v.source === 'fleet' && all.every((p) => v.pcs.includes(p)) ? v : undefined;
    });
    t.same(u.pcs, all, 'everything either instance learnt, before and during the outage');
    t.equal((await fleetStatus(B)).pending, 0);
    await b.c.binary(1, pcs(0x200));
    // B's area still holds 0x300, which B found during the outage and never reported: new for B alone.
    t.same(json(await b.c.coverage(b.fd, 'application/json', '?new=true&reset=true')).pcs, ['0x300'], 'A\'s outage-time 0x200 is not new on B');
    t.match((await A.inject({ method: 'GET', url: '/metrics' })).body, /kcovd_fleet_round_trips_total [1-9]/);
  });

  t.test('DELETE /cover on A empties the union of the corpus on every instance', async (t) => {
    // A second kernel of the same corpus on A: it learns of the reset as B does.
    t.equal((await A.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'twin', dialect: 'linux', corpus: 'default' } })).statusCode, 201);
    const twin = await tracing(A, 5, 'twin');
    await twin.c.binary(5, pcs(0x500));
    await until('B sees the twin\'s PC', async () => (await unionOf(b.c)).pcs.includes('0x500'));
    await b.c.binary(1, pcs(0x600)); // in B's area when the reset comes: it does not count towards the new union
    await until('B pushed 0x600 (B is idle from then on)', async () => redis.cli('hlen', 'kcovd:{default}:pc') === '8' && (await fleetStatus(B)).pending === 0);
    t.equal((await A.inject({ method: 'DELETE', url: '/v1/kernels/default/cover' })).statusCode, 204);
    t.same((await unionOf(a.c)).pcs, [], 'A: empty');
    // B, idle and not read, learns it from its own rounds' epoch check (once a second when idle).
    await until('B empties its union without a read', async () =>
      /^kcovd_cover_pcs\{kernel="default"\} 0$/m.test((await B.inject({ method: 'GET', url: '/metrics' })).body), 5000);
    const ub = await unionOf(b.c);
    t.same(ub.pcs, [], 'B: its own union emptied too');
    t.equal(ub.source, 'fleet');
    t.same((await unionOf(twin.c)).pcs, [], 'the twin kernel on A: empty too');
    t.same(await takeNew(b), [], "what B's area held before it learnt of the reset does not count");
    t.equal((await fleetStatus(B) as unknown as { resets: number }).resets, 1, 'B counts the reset it learnt');
    t.match((await B.inject({ method: 'GET', url: '/metrics' })).body, /kcovd_fleet_resets_total 1\b/);
    // B did not push its old PCs back: the corpus is empty in Redis.
    t.equal(redis.cli('hlen', 'kcovd:{default}:pc'), '0');
    // And every PC is new again, to whoever records it first.
    await b.c.binary(1, pcs(0x10, 0x20));
    t.same(await takeNew(b), ['0x10', '0x20'], 'B: new again after the reset');
    await a.c.binary(1, pcs(0x20, 0x40));
    t.same(await takeNew(a), ['0x40'], 'A: 0x20 was found first by B in the new union');
    t.same((await unionOf(twin.c)).pcs, ['0x10', '0x20', '0x40'], 'one new union');
  });
});
