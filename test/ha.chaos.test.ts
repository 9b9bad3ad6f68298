/**
 * High availability with real processes and a real etcd (test/fixtures/etcd.ts starts one for the file): two peer
 * processes (test/fixtures/haPeer.ts) campaign for one component with leader endpoints; this process is the follower,
 * reaching the leader through `HaServices.connectLeader` and applying the peers' reports on an endpoint fenced
 * monotonically by their tokens. Then the leader is SIGKILLed, SIGSTOPped past its TTL, cut off from etcd by a proxy,
 * or etcd restarts. Each time: the standby takes over (within TTL + 1 s of a kill), the follower reaches it, a deposed
 * leader has stepped down by its own clock before its successor was confirmed, its late calls are rejected by fencing,
 * no two leaderships overlap, and the follower never applies a message from a lower term than one it has applied.
 *
 * Leases of 1 s. Without `etcd` on PATH the suite fails with the install command; `RPC_TEST_ETCD=skip` skips it.
 */
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option, References, Stream } from "effect"
import { HaServices, LeaderToken, RpcEndpoint, RpcError, RpcService } from "effect-actor-rpc"
import * as EtcdHa from "effect-actor-rpc/etcd"
import { randomUUID } from "node:crypto"
import * as Etcd from "./fixtures/etcd.js"
import { describeEtcd } from "./fixtures/etcdSuite.js"
import { awaitRetrieved } from "./fixtures/contender.js"
import { COMPONENT, FollowerGateway, HaControl, HaWork, type PeerEvent } from "./fixtures/haGateway.js"
import { type HaPeer, overlaps, spawnHaPeer, tenures } from "./fixtures/haPeerProcess.js"

class EtcdServer extends Context.Service<EtcdServer, Etcd.Etcd>()("test/ha.chaos/EtcdServer") {}

const TTL_MILLIS = 1000

/** Prints a measured figure (docs/HA.md quotes these runs). */
const figure = (line: string) => console.log(`ha chaos ${line}`)
const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

interface Applied {
  readonly from: string
  readonly term: number
}

/** The follower endpoint: applies reports from successive leaders, refusing a token lower than one it admitted. */
const followerEndpoint = (applied: Array<Applied>) =>
  RpcEndpoint.makeFenced({
    id: "follower",
    gateways: [FollowerGateway],
    monotonic: LeaderToken.Order,
    init: () => Effect.succeed({ handlers: { record: (entry) => Effect.sync(() => void applied.push(entry)) } })
  })

/**
 * This process's side: a TCP service with the follower endpoint, HaServices on etcd, and a client that follows the
 * leader (waiting for one within each call's timeout); then the two peers, through a proxy each if asked.
 */
const cluster = (options: { readonly proxied: boolean }) =>
  Effect.gen(function*() {
    const etcd = yield* EtcdServer
    const prefix = `${randomUUID()}/`
    const service = yield* RpcService.makeTcp({ host: "127.0.0.1", port: "0" })
    const applied: Array<Applied> = []
    const follower = yield* RpcEndpoint.scoped(followerEndpoint(applied)).pipe(
      Effect.provideService(RpcService.RpcService, service)
    )
    const ha = yield* HaServices.make(
      yield* EtcdHa.makeDriver({
        endpoints: [etcd.endpoint],
        ttl: "1 second",
        margin: "250 millis",
        keepAliveInterval: "200 millis",
        requestTimeout: "400 millis",
        prefix
      })
    )
    const context = Context.make(RpcService.RpcService, service).pipe(Context.add(HaServices.HaServices, ha))
    const client = yield* HaServices.connectLeader(COMPONENT, HaWork, { whileNoLeader: "wait" }).pipe(
      Effect.provideContext(context)
    )
    const proxies = options.proxied ? yield* Effect.all([etcd.proxy, etcd.proxy]) : undefined
    const peers = yield* Effect.all(
      ["A", "B"].map((name, i) =>
        spawnHaPeer({
          name,
          etcd: proxies === undefined ? etcd.endpoint : proxies[i]!.authority,
          prefix,
          follower: follower.address
        })
      ),
      { concurrency: "unbounded" }
    )
    // Whoever campaigned first leads.
    const first = yield* Effect.raceAll(
      peers.map((peer) => Effect.as(peer.awaitEvent((e) => e._tag === "Confirmed", "20 seconds"), peer))
    )
    const leader = first
    const standby = peers.find((peer) => peer !== leader)!
    const proxyOf = (peer: HaPeer) => proxies?.[peers.indexOf(peer)]
    const report = (peer: HaPeer) =>
      Effect.flatMap(service.connect(peer.control, HaControl), (control) => control.report())
    return { etcd, service, ha, client, applied, peers, leader, standby, proxyOf, report }
  })

const confirmedOf = (peer: HaPeer, after = 0) =>
  peer.awaitEvent((e) => e._tag === "Confirmed", "15 seconds", after) as Effect.Effect<
    Extract<PeerEvent, { _tag: "Confirmed" }>,
    unknown
  >

const revokedOf = (peer: HaPeer, session: string) =>
  peer.awaitEvent((e) => e._tag === "Revoked" && e.session === session, "10 seconds") as Effect.Effect<
    Extract<PeerEvent, { _tag: "Revoked" }>,
    unknown
  >

/** Waits until the follower's client has registered with the leader of `term`. */
const following = (client: HaServices.LeaderClient<typeof HaWork, never>, term: number) =>
  client.connection.states.pipe(
    Stream.filter((state) => state._tag === "Registered" && state.leader.token.term === term),
    Stream.runHead,
    Effect.timeout("10 seconds")
  )

/** The follower applied reports in non-decreasing term order: monotonic fencing held. */
const assertMonotonic = (applied: ReadonlyArray<Applied>) => {
  for (let i = 1; i < applied.length; i++) {
    assert.isAtLeast(applied[i]!.term, applied[i - 1]!.term, `applied ${JSON.stringify(applied)}`)
  }
}

/** A client carrying `peer`'s old token is rejected by fencing at `peer`'s endpoint. */
const assertStaleClientRejected = (
  service: RpcService.RpcServiceShape,
  peer: HaPeer,
  confirmed: Extract<PeerEvent, { _tag: "Confirmed" }>
) =>
  Effect.gen(function*() {
    const stale = yield* service.connectFenced(
      peer.worker,
      LeaderToken.make(confirmed.term, confirmed.session),
      HaWork
    )
    const rejected = yield* Effect.flip(stale.whoami())
    assert.instanceOf(rejected, RpcError.FencingTokenError, String(rejected))
    assert.include(["Expired", "NotSet", "Mismatch"], (rejected as RpcError.FencingTokenError).reason)
  })

describeEtcd("HA chaos with real processes and etcd", () => {
  layer(Layer.effect(EtcdServer)(Etcd.start), { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.effect("SIGKILL of the leader: the standby is granted within TTL + 1 s and the follower reaches it", () =>
      quiet(Effect.gen(function*() {
        const { applied, client, leader, report, standby } = yield* cluster({ proxied: false })
        assert.strictEqual((yield* client.whoami()).name, leader.name)
        assert.strictEqual((yield* report(leader)).outcome, "ok")

        const killedAt = Date.now()
        yield* leader.kill
        const granted = yield* confirmedOf(standby)
        assert.isAtMost(
          granted.at - killedAt,
          TTL_MILLIS + 1000,
          `the standby was confirmed ${granted.at - killedAt} ms after the kill`
        )
        figure(`SIGKILL: the standby was confirmed ${granted.at - killedAt} ms after the kill (TTL ${TTL_MILLIS} ms)`)
        yield* following(client, granted.term)
        const reached = yield* client.whoami(undefined, { timeout: "5 seconds" })
        assert.deepStrictEqual(reached, { name: standby.name, term: granted.term })
        assert.strictEqual((yield* report(standby)).outcome, "ok")
        assertMonotonic(applied)
        const killed = tenures([leader, standby]).map((t) => t.peer === leader.name ? { ...t, end: killedAt } : t)
        assert.deepStrictEqual(overlaps(killed), [])
      })), 60_000)

    it.effect("SIGSTOP past the TTL: the leader has stepped down by its own clock; after SIGCONT its calls are rejected", () =>
      quiet(Effect.gen(function*() {
        const { applied, client, leader, report, service, standby } = yield* cluster({ proxied: false })
        const first = yield* confirmedOf(leader)
        assert.strictEqual((yield* client.whoami()).name, leader.name)
        assert.strictEqual((yield* report(leader)).outcome, "ok")

        yield* leader.signal("SIGSTOP")
        const second = yield* confirmedOf(standby)
        assert.isAbove(second.term, first.term)
        yield* following(client, second.term)
        assert.strictEqual((yield* client.whoami(undefined, { timeout: "5 seconds" })).name, standby.name)
        assert.strictEqual((yield* report(standby)).outcome, "ok")

        yield* leader.signal("SIGCONT")
        // Its endpoint refuses its old session's token (Expired by its own clock, or NotSet once revoked).
        yield* assertStaleClientRejected(service, leader, first)
        // Its late work is refused by the follower, which has applied a newer term.
        assert.deepStrictEqual(yield* report(leader), { outcome: "Stale", term: first.term })
        const revoked = yield* revokedOf(leader, first.session)
        assert.isAtMost(revoked.deadline, second.at, "its lease deadline had passed before the successor was confirmed")
        figure(
          `SIGSTOP: the frozen leader's deadline passed ${second.at - revoked.deadline} ms before its successor was ` +
            `confirmed; after SIGCONT it stepped down (${revoked.reason}) and the follower refused its report (Stale)`
        )
        assert.deepStrictEqual(overlaps(tenures([leader, standby])), [])
        assertMonotonic(applied)
        assert.deepStrictEqual(applied.map((a) => a.from), [leader.name, standby.name])
      })), 60_000)

    it.effect("cut off from etcd by a proxy: the leader steps down by its own clock before the successor; then is rejected", () =>
      quiet(Effect.gen(function*() {
        const { applied, client, leader, proxyOf, report, service, standby } = yield* cluster({ proxied: true })
        const first = yield* confirmedOf(leader)
        assert.strictEqual((yield* report(leader)).outcome, "ok")

        yield* proxyOf(leader)!.partition
        const second = yield* confirmedOf(standby)
        const revoked = yield* revokedOf(leader, first.session)
        assert.isAtMost(revoked.at, second.at, "the cut-off leader stepped down before its successor was confirmed")
        figure(`partition: the cut-off leader stepped down (${revoked.reason}) ${second.at - revoked.at} ms before its successor was confirmed`)
        assert.include(["Expired", "Suspended"], revoked.reason)
        yield* following(client, second.term)
        assert.strictEqual((yield* client.whoami(undefined, { timeout: "5 seconds" })).name, standby.name)
        assert.strictEqual((yield* report(standby)).outcome, "ok")

        yield* proxyOf(leader)!.heal
        yield* assertStaleClientRejected(service, leader, first)
        assert.deepStrictEqual(yield* report(leader), { outcome: "Stale", term: first.term })
        assert.deepStrictEqual(overlaps(tenures([leader, standby])), [])
        assertMonotonic(applied)
      })), 60_000)

    it.effect("an etcd restart: no leader while it is down, a new term after, never two confirmed leaders at once", () =>
      quiet(Effect.gen(function*() {
        const { client, etcd, ha, leader, peers } = yield* cluster({ proxied: false })
        const first = yield* confirmedOf(leader)
        const retrieval = yield* ha.retrieve(COMPONENT)
        const stoppedAt = Date.now()
        yield* etcd.stop
        const revoked = yield* revokedOf(leader, first.session)
        // While etcd is down nobody can be vouched for: the follower's retrieval shows no leader.
        yield* awaitRetrieved(retrieval, Option.none(), "5 seconds")
        yield* Effect.sleep("1500 millis")
        yield* etcd.restart
        const next = yield* Effect.raceAll(
          peers.map((peer) =>
            peer.awaitEvent((e) => e._tag === "Confirmed" && e.term > first.term, "20 seconds")
          )
        )
        assert.isAbove(next.term, first.term)
        yield* following(client, next.term)
        const reached = yield* client.whoami(undefined, { timeout: "5 seconds" })
        assert.strictEqual(reached.term, next.term)
        assert.deepStrictEqual(overlaps(tenures(peers)), [])
        const successor = peers.find((peer) => peer.events.includes(next))!
        figure(
          `etcd restart: term ${first.term} (${leader.name}) stepped down (${revoked.reason}) ${revoked.at - stoppedAt} ms ` +
            `after etcd stopped; term ${next.term} (${successor.name}) was confirmed ${next.at - stoppedAt} ms after it ` +
            `stopped (down for 1.5 s, then its restart)`
        )
      })), 60_000)
  })
})

