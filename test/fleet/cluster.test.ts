/**
 * The fleet on a real Redis Cluster (three masters from Debian's
 * redis-server, no replicas): two kcovd instances share one union, every key
 * of a corpus lives in one hash slot, and a node restarted empty mid-test
 * loses nothing. CI installs redis-server (.ci/run); there a missing one fails.
 */
import t from 'tap';
import { json, makeApp, pcs } from '../helpers.js';
import { keysOf } from '../../src/fleet/redis.js';
import { RedisCluster } from './servers.js';
import { fleetStatus, need, takeNew, tracing, unionOf, until } from './common.js';

const have = need('redis-server', 'redis-cli');

t.test('two instances on a three-master Redis Cluster', { skip: have ? false : 'redis-server not installed (not CI)' }, async (t) => {
  const cluster = await RedisCluster.create();
  t.teardown(() => cluster.destroy());
  const env = { KCOV_FLEET_FLUSH_MS: '10', KCOV_FLEET_TIMEOUT_MS: '1000' };
  // A is given every seed (several URLs: the cluster client); B one seed and KCOV_FLEET_CLUSTER.
  const A = await makeApp(t, { ...env, KCOV_FLEET_URL: cluster.url });
  const B = await makeApp(t, { ...env, KCOV_FLEET_URL: cluster.nodes[1]!.url, KCOV_FLEET_CLUSTER: 'true' });
  await until('A and B connected', async () => (await fleetStatus(A)).connected && (await fleetStatus(B)).connected);
  const a = await tracing(A, 1);
  const b = await tracing(B, 1);
  let k2: Awaited<ReturnType<typeof tracing>> | null = null;

  t.test('a PC posted to A is not new on B', async (t) => {
    await a.c.binary(1, pcs(0x10, 0x20));
    await until("B sees A's PCs", async () => {
      const u = await unionOf(b.c);
      return u.source === 'fleet' && u.pcs.includes('0x20');
    });
    await b.c.binary(1, pcs(0x20, 0x30));
    t.same(await takeNew(b), ['0x30'], 'B: 0x20 was found first by A');
    t.same(await takeNew(a), ['0x10', '0x20'], 'A: still new for the instance that found them');
    const u = await unionOf(a.c);
    t.same(u.pcs, ['0x10', '0x20', '0x30'], 'one union for both');
    t.equal(u.source, 'fleet');
  });

  t.test('the keys of one corpus share a hash slot: its multi-key commands work', async (t) => {
    // A second corpus, on a kernel of B only.
    t.equal((await B.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'k2', dialect: 'linux', corpus: 'other' } })).statusCode, 201);
    const x = (k2 = await tracing(B, 7, 'k2'));
    await x.c.binary(7, pcs(0x700, 0x704));
    await until('k2 in the cluster', async () => (await unionOf(x.c)).source === 'fleet');
    for (const corpus of ['default', 'other']) {
      const keys = Object.values(keysOf(corpus));
      t.ok(keys.length >= 2, 'a corpus has several keys');
      const slots = keys.map((k) => cluster.nodes[0]!.cli('cluster', 'keyslot', k));
      t.same(new Set(slots).size, 1, `${corpus}: ${keys.join(', ')} hash to one slot (${slots[0]})`);
      // EXISTS over all of them is one multi-key command: it works only within one slot.
      const node = cluster.nodeOf(keys[0]!);
      t.equal(node.cli('exists', ...keys), String(keys.length), `${corpus}: every key is on the node of that slot`);
    }
    t.equal(cluster.nodes[0]!.cli('cluster', 'keyslot', keysOf('default').pc) === cluster.nodes[0]!.cli('cluster', 'keyslot', keysOf('other').pc), false, 'two corpora: two slots');
    t.same((await unionOf(x.c)).pcs, ['0x700', '0x704']);
    t.same((await unionOf(a.c)).pcs, ['0x10', '0x20', '0x30'], 'corpora do not mix');
  });

  t.test('the node of the corpus restarted empty mid-test: nothing lost', async (t) => {
    await a.c.binary(1, pcs(0x100));
    await until('0x100 in the cluster', async () => (await unionOf(b.c)).pcs.includes('0x100'));
    const node = cluster.nodeOf(keysOf('default').pc);
    const runId = (n: typeof node) => /run_id:(\w+)/.exec(n.cli('info', 'server'))![1];
    const before = runId(node);
    await node.stop();
    // Both keep recording and answering while the slot is down.
    await a.c.binary(1, pcs(0x200));
    t.same(await takeNew(a), ['0x100', '0x200'], 'A answers ?new locally');
    await b.c.binary(1, pcs(0x300));
    t.ok((await unionOf(b.c)).pcs.includes('0x300'));
    t.equal(json(await B.inject({ method: 'GET', url: '/readyz' })).ready, true, 'still ready: serving from the local union');
    const down = await until('B sees the slot down', async () => {
      const f = await fleetStatus(B);
      return f.connected ? undefined : f;
    });
    t.ok(down.pending > 0, 'what B learnt is pending');
    t.match(down.error, /CLUSTERDOWN|closed|ECONNREFUSED|redirections/i, 'and why');

    await node.start(); // same ports and nodes.conf: it takes its slots back, empty
    // Checked on the node itself, not on the keys: the instances may re-push the corpus as soon as it answers.
    t.not(runId(node), before, 'a new process serves the slot');
    t.match(node.cli('info', 'persistence'), /rdb_last_load_keys_loaded:0\b/, 'the node came back without the corpus (it loaded no keys)');
    await cluster.healthy();
    const all = ['0x10', '0x20', '0x30', '0x100', '0x200', '0x300'];
    const u = await until('the union complete again', async () => {
      const v = await unionOf(a.c);
      return v.source === 'fleet' && all.every((p) => v.pcs.includes(p)) ? v : undefined;
    }, 20_000);
    t.same(u.pcs, all, 'everything either instance learnt, before and during the outage');
    t.equal(node.cli('hlen', keysOf('default').pc), String(all.length), 'and in the cluster itself');
    t.same((await unionOf(b.c)).pcs, all, 'B reads the same');
    await b.c.binary(1, pcs(0x200, 0x10));
    t.same(await takeNew(b), ['0x300'], "A's PCs are not new on B; B's own 0x300 (never reported) is");
    t.equal((await unionOf(k2!.c)).source, 'fleet', 'the other corpus is in the cluster');
  });

  t.test('DELETE /cover on B empties the corpus on both instances (one script, three keys, one slot)', async (t) => {
    t.equal((await B.inject({ method: 'DELETE', url: '/v1/kernels/default/cover' })).statusCode, 204);
    t.same((await unionOf(b.c)).pcs, []);
    const ua = await unionOf(a.c);
    t.same(ua.pcs, [], "A's union emptied at its next round");
    t.equal(ua.source, 'fleet');
    const node = cluster.nodeOf(keysOf('default').pc);
    t.equal(node.cli('hlen', keysOf('default').pc), '0');
    t.match(node.cli('get', keysOf('default').epoch), /^1:/, 'the generation went up');
    t.same((await unionOf(k2!.c)).pcs, ['0x700', '0x704'], 'the other corpus is untouched');
  });
});
