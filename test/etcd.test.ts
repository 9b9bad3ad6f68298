/**
 * The etcd driver against a real etcd (test/fixtures/etcd.ts starts one per file): Flink's `LeaderElectionTest`
 * suite, the `ZooKeeperLeaderElectionTest` cases (election and retrieval agree; ten contenders re-elected as each
 * resigns; thirty kill-and-replace rounds; retrieval empties when the leader's session ends), the connection-handling
 * cases (suspended → retrieval empty; reconnect → same or new leader), and the three flaws measured in etcd3's
 * `Election` helper: a partitioned leader must step down by its own deadline before anyone else is granted; a
 * disconnection is reported as "Suspended"; no grant for a key that no longer exists.
 *
 * Leases of 1 s (the fixture's etcd allows them) keep the suite to seconds. Every test uses a key prefix of its own.
 * Without `etcd` on PATH the suite fails with the install command; `RPC_TEST_ETCD=skip` skips it.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Exit, Layer, Option, References, Scope } from "effect"
import { HaServices, LeaderToken } from "effect-actor-rpc"
import * as EtcdHa from "effect-actor-rpc/etcd"
import { Etcd3 } from "etcd3"
import { randomUUID } from "node:crypto"
import { awaitRetrieved, record, type RecordingContender } from "./fixtures/contender.js"
import * as Etcd from "./fixtures/etcd.js"
import { describeEtcd } from "./fixtures/etcdSuite.js"
import { leaderElectionSuite } from "./fixtures/leaderElectionSuite.js"

class EtcdServer extends Context.Service<EtcdServer, Etcd.Etcd>()("test/EtcdServer") {}

const TTL = "1 second"
const MARGIN = "250 millis"
const KEEPALIVE = "200 millis"

const optionsFor = (endpoint: string, prefix: string): EtcdHa.EtcdOptions => ({
  endpoints: [endpoint],
  ttl: TTL,
  margin: MARGIN,
  keepAliveInterval: KEEPALIVE,
  requestTimeout: "400 millis",
  prefix
})

/** HA services on their own etcd client (a process of their own, as far as etcd can tell), closed with the scope. */
const services = (endpoint: string, prefix: string) =>
  Effect.flatMap(EtcdHa.makeDriver(optionsFor(endpoint, prefix)), HaServices.make)

/** A campaign with a recording contender, in a scope of its own (`close` resigns). */
const contend = (ha: HaServices.HaServicesShape, component: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const recorder = yield* record()
    const election = yield* ha.campaign(component, recorder.contender).pipe(Scope.provide(scope))
    return { recorder, election, close: Scope.close(scope, Exit.void) }
  })

type Contender = Effect.Success<ReturnType<typeof contend>>

const grants = (recorder: RecordingContender) => recorder.history.filter((event) => event._tag === "Grant")

/** Waits (polling, bounded) until one of `contenders` has more grants than `seen` says; returns its index. */
const awaitNewLeader = (contenders: ReadonlyArray<Contender>, seen: Array<number>, limit = 10_000) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    while (true) {
      const granted = contenders.flatMap((contender, i) => grants(contender.recorder).length > seen[i]! ? [i] : [])
      if (granted.length > 1) assert.fail(`two contenders were granted at once: ${granted.join(", ")}`)
      if (granted.length === 1) {
        const i = granted[0]!
        seen[i] = grants(contenders[i]!.recorder).length
        const last = grants(contenders[i]!.recorder).at(-1)!
        return { index: i, leadership: (last as Extract<typeof last, { _tag: "Grant" }>).leadership }
      }
      if ((yield* Clock.currentTimeMillis) - start > limit) assert.fail(`no contender was granted within ${limit} ms`)
      yield* Effect.sleep("10 millis")
    }
  })

/** The next grant, passing over the errors reported while etcd could not be reached. */
const nextGrantAfterErrors = (recorder: RecordingContender): Effect.Effect<HaServices.Leadership> =>
  Effect.flatMap(recorder.next, (event) => {
    if (event._tag === "Grant") return Effect.succeed(event.leadership)
    assert.strictEqual(event._tag, "Error", `expected a grant, got ${event._tag}`)
    return nextGrantAfterErrors(recorder)
  })

/** A raw etcd3 client for looking at the keys the driver wrote. */
const rawClient = (endpoint: string) =>
  Effect.acquireRelease(Effect.sync(() => new Etcd3({ hosts: endpoint })), (client) => Effect.sync(() => client.close()))

const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

describeEtcd("HA on etcd", () => {
  layer(Layer.effect(EtcdServer)(Etcd.start), { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    leaderElectionSuite("etcd", {
      test: (name, self) => it.effect(name, () => quiet(self())),
      layer: Layer.unwrap(Effect.map(EtcdServer, (etcd) => EtcdHa.layer(optionsFor(etcd.endpoint, `${randomUUID()}/`)))),
      grant: () => Effect.void
    })

    it.effect("election and retrieval agree (another client sees what the leader confirmed)", () =>
      quiet(Effect.gen(function*() {
        const etcd = yield* EtcdServer
        const prefix = `${randomUUID()}/`
        const leaderSide = yield* services(etcd.endpoint, prefix)
        const followerSide = yield* services(etcd.endpoint, prefix)
        const retrieval = yield* followerSide.retrieve("resourcemanager")
        const leader = yield* contend(leaderSide, "resourcemanager")
        const leadership = yield* leader.recorder.nextGrant
        assert.isTrue(yield* leader.election.confirm(leadership.token, "rpc://127.0.0.1:6123/rm"))
        const seen = Option.getOrThrow(yield* awaitRetrieved(retrieval, Option.some(leadership.token)))
        assert.strictEqual(seen.address, "rpc://127.0.0.1:6123/rm")
        assert.isTrue(LeaderToken.Equivalence(seen.token, leadership.token))
        // The term is the create revision of the leader's candidate key.
        const raw = yield* rawClient(etcd.endpoint)
        const keys = yield* Effect.promise(() =>
          raw.getAll().prefix(`${prefix}resourcemanager/candidates/`).exec())
        const own = keys.kvs.find((kv) => kv.key.toString().endsWith(leadership.token.session))!
        assert.strictEqual(Number(own.create_revision), leadership.token.term)
      })))

    it.effect("ten contenders: re-election as each resigns in turn, one leader at a time, terms increasing", () =>
      quiet(Effect.gen(function*() {
        const etcd = yield* EtcdServer
        const ha = yield* services(etcd.endpoint, `${randomUUID()}/`)
        const retrieval = yield* ha.retrieve("jobmaster/job-1")
        const contenders: Array<Contender> = []
        for (let i = 0; i < 10; i++) contenders.push(yield* contend(ha, "jobmaster/job-1"))
        const seen = contenders.map(() => 0)
        const resigned = new Set<number>()
        let lastTerm = 0
        for (let round = 0; round < 10; round++) {
          const { index, leadership } = yield* awaitNewLeader(contenders, seen)
          assert.isFalse(resigned.has(index), "a resigned contender was granted")
          assert.isTrue(leadership.token.term > lastTerm, `term ${leadership.token.term} after ${lastTerm}`)
          lastTerm = leadership.token.term
          yield* contenders[index]!.election.confirm(leadership.token, `rpc://c${index}`)
          yield* awaitRetrieved(retrieval, Option.some(leadership.token))
          yield* contenders[index]!.close
          resigned.add(index)
        }
        assert.strictEqual(resigned.size, 10)
        yield* awaitRetrieved(retrieval, Option.none())
      })), 30_000)

    it.effect("thirty kill-and-replace rounds: the leader goes, a newcomer joins, terms keep increasing", () =>
      quiet(Effect.gen(function*() {
        const etcd = yield* EtcdServer
        const ha = yield* services(etcd.endpoint, `${randomUUID()}/`)
        const contenders: Array<Contender> = []
        for (let i = 0; i < 3; i++) contenders.push(yield* contend(ha, "dispatcher"))
        const seen = contenders.map(() => 0)
        const terms: Array<number> = []
        for (let round = 0; round < 30; round++) {
          const { index, leadership } = yield* awaitNewLeader(contenders, seen)
          terms.push(leadership.token.term)
          yield* contenders[index]!.close
          contenders.push(yield* contend(ha, "dispatcher"))
          seen.push(0)
        }
        for (let i = 1; i < terms.length; i++) assert.isTrue(terms[i]! > terms[i - 1]!, terms.join(","))
      })), 30_000)

    it.effect("retrieval empties when the leader's session ends (a leader cut off for good)", () =>
      quiet(Effect.gen(function*() {
        const etcd = yield* EtcdServer
        const prefix = `${randomUUID()}/`
        const proxy = yield* etcd.proxy
        const leaderSide = yield* services(proxy.authority, prefix)
        const retrieval = yield* (yield* services(etcd.endpoint, prefix)).retrieve("rm")
        const leader = yield* contend(leaderSide, "rm")
        const leadership = yield* leader.recorder.nextGrant
        yield* leader.election.confirm(leadership.token, "rpc://leader")
        yield* awaitRetrieved(retrieval, Option.some(leadership.token))
        yield* proxy.partition
        // etcd ends the lease about one TTL after the last keepalive, which deletes the published leader with it.
        yield* awaitRetrieved(retrieval, Option.none(), "5 seconds")
        const revocation = yield* leader.recorder.nextRevoke
        assert.include(["Suspended", "Expired"], revocation.reason)
      })))

    it.effect("a partitioned leader steps down by its own deadline before any successor is granted", () =>
      quiet(Effect.gen(function*() {
        const etcd = yield* EtcdServer
        const prefix = `${randomUUID()}/`
        const proxy = yield* etcd.proxy
        const a = yield* contend(yield* services(proxy.authority, prefix), "rm")
        const first = yield* a.recorder.nextGrant
        yield* a.election.confirm(first.token, "rpc://a")
        const b = yield* contend(yield* services(etcd.endpoint, prefix), "rm")
        yield* Effect.sleep("300 millis")
        assert.strictEqual(grants(b.recorder).length, 0)

        // A black hole: nothing arrives, nothing fails. etcd3's Election let the old leader believe for about one more
        // TTL; here it must have stepped down, by its own clock, before etcd can even expire its lease.
        yield* proxy.partition
        const second = yield* b.recorder.nextGrant.pipe(Effect.timeout("10 seconds"))
        const grantedAt = b.recorder.history.at(-1)!.at
        const revoked = a.recorder.history.find((event) => event._tag === "Revoke")
        assert.isDefined(revoked, "the partitioned leader was never told to step down")
        assert.isTrue(revoked!.at <= grantedAt, `stepped down at ${revoked!.at}, successor granted at ${grantedAt}`)
        assert.isTrue(
          grantedAt >= first.leaseDeadline(),
          `successor granted at ${grantedAt}, before the old lease deadline ${first.leaseDeadline()}`
        )
        assert.isFalse(yield* a.election.hasLeadership(first.token))
        assert.isTrue(second.token.term > first.token.term)
        yield* proxy.heal
      })))

    it.effect("a lost connection is reported as Suspended and empties retrieval; a leader follows the reconnect", () =>
      quiet(Effect.gen(function*() {
        const etcd = yield* EtcdServer
        const prefix = `${randomUUID()}/`
        const proxy = yield* etcd.proxy
        const ha = yield* services(proxy.authority, prefix)
        const retrieval = yield* ha.retrieve("rm")
        const leader = yield* contend(ha, "rm")
        const first = yield* leader.recorder.nextGrant
        yield* leader.election.confirm(first.token, "rpc://leader")
        yield* awaitRetrieved(retrieval, Option.some(first.token))

        // The connection breaks (RST) and stays unusable until healed.
        yield* proxy.partition
        yield* proxy.reset
        const revocation = yield* leader.recorder.nextRevoke.pipe(Effect.timeout("5 seconds"))
        assert.strictEqual(revocation.reason, "Suspended")
        yield* awaitRetrieved(retrieval, Option.none(), "5 seconds")

        yield* proxy.heal
        // Reconnected: the same contender (the only one) leads again, in a new session with a higher term.
        const second = yield* nextGrantAfterErrors(leader.recorder).pipe(Effect.timeout("10 seconds"))
        assert.isTrue(second.token.term > first.token.term)
        yield* leader.election.confirm(second.token, "rpc://leader")
        yield* awaitRetrieved(retrieval, Option.some(second.token))
      })))

    it.effect("no grant for a key that vanished in an outage: the candidate comes back with a fresh key", () =>
      quiet(Effect.gen(function*() {
        const etcd = yield* EtcdServer
        const prefix = `${randomUUID()}/`
        const proxy = yield* etcd.proxy
        const raw = yield* rawClient(etcd.endpoint)
        const candidates = () =>
          Effect.promise(() => raw.getAll().prefix(`${prefix}rm/candidates/`).exec()).pipe(
            Effect.map((response) =>
              response.kvs.map((kv) => ({ key: kv.key.toString(), revision: Number(kv.create_revision) }))
                .sort((x, y) => x.revision - y.revision)
            )
          )
        const a = yield* contend(yield* services(etcd.endpoint, prefix), "rm")
        yield* a.recorder.nextGrant
        const b = yield* contend(yield* services(proxy.authority, prefix), "rm")
        let before = yield* candidates()
        for (let i = 0; before.length < 2 && i < 200; i++) {
          yield* Effect.sleep("10 millis")
          before = yield* candidates()
        }
        assert.strictEqual(before.length, 2)
        const oldKey = before[1]!

        // B's outage outlasts its lease: etcd deletes B's key.
        yield* proxy.partition
        yield* Effect.sleep("2500 millis")
        assert.isFalse((yield* candidates()).some((kv) => kv.key === oldKey.key), "B's key outlived its lease")
        yield* proxy.heal
        yield* a.close

        const granted = yield* nextGrantAfterErrors(b.recorder).pipe(Effect.timeout("10 seconds"))
        assert.isTrue(granted.token.term > oldKey.revision, `${granted.token} vs the vanished key ${oldKey.revision}`)
        const live = yield* candidates()
        const own = live.find((kv) => kv.key.endsWith(granted.token.session))
        assert.isDefined(own, "granted for a key that does not exist")
        assert.strictEqual(own!.revision, granted.token.term)
      })), 30_000)

    it.effect("an etcd outage: Suspended and no leader while it is down; a new session with a higher term after", () =>
      quiet(Effect.gen(function*() {
        const etcd = yield* EtcdServer
        const prefix = `${randomUUID()}/`
        const ha = yield* services(etcd.endpoint, prefix)
        const retrieval = yield* ha.retrieve("rm")
        const leader = yield* contend(ha, "rm")
        const first = yield* leader.recorder.nextGrant
        yield* leader.election.confirm(first.token, "rpc://leader")
        yield* awaitRetrieved(retrieval, Option.some(first.token))

        yield* etcd.stop
        const revocation = yield* leader.recorder.nextRevoke.pipe(Effect.timeout("5 seconds"))
        assert.include(["Suspended", "Expired"], revocation.reason)
        yield* awaitRetrieved(retrieval, Option.none(), "5 seconds")
        yield* Effect.sleep(Duration.millis(500))
        assert.strictEqual(grants(leader.recorder).length, 1, "granted while etcd was down")

        yield* etcd.restart
        const second = yield* nextGrantAfterErrors(leader.recorder).pipe(Effect.timeout("15 seconds"))
        const errors = leader.recorder.history.filter((event) => event._tag === "Error")
        assert.isAbove(errors.length, 0, "the failed campaign attempts were not reported")
        assert.isTrue(errors.every((event) => event._tag === "Error" && event.error.reason === "Unreachable"))
        assert.isTrue(second.token.term > first.token.term)
        yield* leader.election.confirm(second.token, "rpc://leader")
        yield* awaitRetrieved(retrieval, Option.some(second.token))
      })), 40_000)
  })
})

describe("the etcd driver's configuration", () => {
  it.effect("refuses a margin that leaves no room and an empty endpoint list, naming the engine", () =>
    Effect.gen(function*() {
      const tooLate = yield* Effect.flip(
        EtcdHa.makeDriver({ endpoints: ["127.0.0.1:1"], ttl: "2 seconds", margin: "2 seconds" })
      )
      assert.strictEqual(tooLate.reason, "InvalidConfiguration")
      assert.include(tooLate.message, "etcd 127.0.0.1:1")
      const none = yield* Effect.flip(EtcdHa.makeDriver({ endpoints: [] }))
      assert.strictEqual(none.reason, "InvalidConfiguration")
      const short = yield* Effect.flip(EtcdHa.makeDriver({ endpoints: ["127.0.0.1:1"], ttl: "500 millis" }))
      assert.include(short.message, "at least 1 second")
    }))

  it.live("an unreachable etcd is retried, reported to the contender once, and never granted", () =>
    quiet(Effect.gen(function*() {
      const ha = yield* Effect.flatMap(
        EtcdHa.makeDriver({ endpoints: ["127.0.0.1:1"], ttl: "1 second", margin: "100 millis", requestTimeout: "100 millis" }),
        HaServices.make
      )
      const recorder = yield* record()
      yield* ha.campaign("rm", recorder.contender)
      const event = yield* recorder.next.pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(event._tag, "Error")
      if (event._tag === "Error") {
        assert.strictEqual(event.error.reason, "Unreachable")
        assert.include(event.error.message, "etcd 127.0.0.1:1")
        assert.include(event.error.message, `"rm"`)
      }
      yield* Effect.sleep("500 millis")
      assert.isTrue(recorder.history.every((e) => e._tag === "Error"))
      assert.strictEqual(recorder.history.length, 1)
    })), 15_000)
})
