/**
 * HaServices over the testing and embedded drivers, on the TestClock: a port of Flink's
 * `DefaultLeaderElectionServiceTest` (grant, confirm, revoke, stale confirmations, events after close, leader
 * information corrected), the lease-deadline watchdog, and Flink's `LeaderElectionTest` over both drivers.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, References, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { HaError, HaServices, HaTesting, LeaderInformation, LeaderToken } from "effect-actor-rpc"
import { awaitRetrieved, campaign, record } from "./fixtures/contender.js"
import { leaderElectionSuite } from "./fixtures/leaderElectionSuite.js"

const quiet = Effect.provideService(References.MinimumLogLevel, "Warn")
const withTesting = <A, E>(self: Effect.Effect<A, E, HaServices.HaServices | HaTesting.HaTesting | Scope.Scope>) =>
  self.pipe(Effect.provide(HaTesting.layer), quiet)

const ADDRESS = "rpc://127.0.0.1:6123/jobmanager"
const C = "resourcemanager"

const closeable = (component: string, hooks?: Parameters<typeof campaign>[1]) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const opened = yield* campaign(component, hooks).pipe(Scope.provide(scope))
    return { ...opened, close: Scope.close(scope, Exit.void) }
  })

describe("HaServices (DefaultLeaderElectionServiceTest)", () => {
  it.effect("grant publishes only after confirm; revoke notifies, clears the published leader and the session", () =>
    withTesting(Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const testing = yield* HaTesting.HaTesting
      const retrieval = yield* ha.retrieve(C)
      const { election, recorder } = yield* campaign(C)
      const token = yield* testing.grant(C)
      const leadership = yield* recorder.nextGrant
      assert.isTrue(LeaderToken.Equivalence(leadership.token, token))
      assert.strictEqual(leadership.leaseDeadline(), Number.POSITIVE_INFINITY)
      assert.isTrue(Option.isNone(yield* testing.published(C)), "granted but not confirmed: nothing published")
      assert.isTrue(Option.isSome(yield* election.leadership))

      assert.isTrue(yield* election.confirm(token, ADDRESS))
      const published = yield* testing.published(C)
      assert.isTrue(
        Option.isSome(published) && LeaderInformation.Equivalence(published.value, LeaderInformation.make(ADDRESS, token))
      )
      yield* awaitRetrieved(retrieval, Option.some(token))

      yield* testing.revoke(C)
      const revocation = yield* recorder.nextRevoke
      assert.strictEqual(revocation.reason, "Revoked")
      assert.isTrue(LeaderToken.Equivalence(revocation.token, token))
      assert.isFalse(yield* election.hasLeadership(token))
      assert.isTrue(Option.isNone(yield* election.leadership))
      yield* awaitRetrieved(retrieval, Option.none())
      assert.isTrue(Option.isNone(yield* testing.published(C)))
    })))

  it.effect("stale confirmations are ignored: an old session's token, a random one", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const { election, recorder } = yield* campaign(C)
      const first = yield* testing.grant(C)
      yield* recorder.nextGrant
      yield* testing.revoke(C)
      yield* recorder.nextRevoke
      const second = yield* testing.grant(C)
      yield* recorder.nextGrant
      assert.isTrue(second.term > first.term)

      assert.isFalse(yield* election.confirm(first, ADDRESS))
      assert.isFalse(yield* election.confirm(LeaderToken.make(second.term, "someone-else"), ADDRESS))
      assert.isTrue(Option.isNone(yield* testing.published(C)))
      assert.isFalse(yield* election.hasLeadership(first))
      assert.isTrue(yield* election.hasLeadership(second))
      assert.isTrue(yield* election.confirm(second, ADDRESS))
    })))

  it.effect("a second grant while leading revokes the first session before granting the new one", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const { recorder } = yield* campaign(C)
      const first = yield* testing.grant(C)
      const second = yield* testing.grant(C)
      assert.isTrue(LeaderToken.Equivalence((yield* recorder.nextGrant).token, first))
      const revocation = yield* recorder.nextRevoke
      assert.isTrue(LeaderToken.Equivalence(revocation.token, first))
      assert.isTrue(LeaderToken.Equivalence((yield* recorder.nextGrant).token, second))
    })))

  it.effect("closing while leading resigns: the contender hears it, the published leader and the candidate go", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const a = yield* closeable(C)
      const token = yield* testing.grant(C)
      yield* a.recorder.nextGrant
      yield* a.election.confirm(token, ADDRESS)
      assert.strictEqual(yield* testing.candidates(C), 1)

      yield* a.close
      const revocation = yield* a.recorder.nextRevoke
      assert.strictEqual(revocation.reason, "Resigned")
      assert.isTrue(Option.isNone(yield* testing.published(C)))
      assert.strictEqual(yield* testing.candidates(C), 0)
      assert.isFalse(yield* a.election.hasLeadership(token))
      const afterClose = yield* Effect.flip(a.election.confirm(token, ADDRESS))
      assert.strictEqual(afterClose.reason, "Closed")
    })))

  it.effect("events after close are dropped: a grant queued before the close never reaches the contender", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const a = yield* closeable(C)
      // The grant is queued for the contender's event fiber, which has not run yet when the close starts.
      yield* testing.grant(C)
      yield* testing.fail(C, "late error")
      yield* a.close
      yield* Effect.yieldNow
      assert.deepStrictEqual(a.recorder.history, [])
      assert.isTrue(Option.isNone(yield* a.election.leadership))
      // The driver forgot the candidate: nothing more can be granted to it.
      const refused = yield* Effect.flip(testing.grant(C))
      assert.strictEqual(refused.reason, "Rejected")
    })))

  it.effect("close racing a slow grant: the contender sees the grant, then the resignation, never the reverse", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const a = yield* closeable(C, { onGrant: () => Effect.sleep("1 second") })
      yield* testing.grant(C)
      // Let the event fiber enter the grant callback (it sleeps there), then close concurrently.
      while (a.recorder.history.length === 0) yield* Effect.yieldNow
      const closing = yield* Effect.forkChild(a.close)
      yield* Effect.yieldNow
      assert.isUndefined(closing.pollUnsafe(), "the close waits for the grant being delivered")
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      assert.deepStrictEqual(a.recorder.history.map((event) => event._tag), ["Grant", "Revoke"])
    })))

  it.effect("a contender may confirm from inside its grant callback", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const confirmed: Array<boolean> = []
      const ha = yield* HaServices.HaServices
      const recorder = yield* record({
        onGrant: (leadership) =>
          leadership.confirm(ADDRESS).pipe(
            Effect.flatMap((ok) => Effect.sync(() => void confirmed.push(ok))),
            Effect.orDie
          )
      })
      yield* ha.campaign(C, recorder.contender)
      const token = yield* testing.grant(C)
      yield* recorder.nextGrant
      while (confirmed.length === 0) yield* Effect.yieldNow
      assert.deepStrictEqual(confirmed, [true])
      const published = yield* testing.published(C)
      assert.isTrue(Option.isSome(published) && LeaderToken.Equivalence(published.value.token, token))
    })))

  it.effect("the published leader is corrected while confirmed, and left alone otherwise", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const { election, recorder } = yield* campaign(C)
      const faulty = LeaderInformation.make("rpc://faulty:1/x", LeaderToken.make(99, "faulty"))
      // Not leading: a stray write stays.
      yield* testing.setPublished(C, Option.some(faulty))
      yield* Effect.yieldNow
      assert.isTrue(Option.isSome(yield* testing.published(C)))

      const token = yield* testing.grant(C)
      yield* recorder.nextGrant
      // Granted but not confirmed yet: still left alone.
      yield* testing.setPublished(C, Option.some(faulty))
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.strictEqual(Option.getOrThrow(yield* testing.published(C)).address, "rpc://faulty:1/x")

      yield* election.confirm(token, ADDRESS)
      const expected = LeaderInformation.make(ADDRESS, token)
      for (const external of [Option.none(), Option.some(faulty)]) {
        yield* testing.setPublished(C, external)
        for (let i = 0; i < 5; i++) yield* Effect.yieldNow
        const now = yield* testing.published(C)
        assert.isTrue(Option.isSome(now) && LeaderInformation.Equivalence(now.value, expected), String(now))
      }
    })))

  it.effect("driver errors reach the contender while it campaigns", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const { recorder } = yield* campaign(C)
      yield* testing.fail(C, "disk full")
      const event = yield* recorder.next
      assert.strictEqual(event._tag, "Error")
      if (event._tag === "Error") {
        assert.include(event.error.message, "disk full")
        assert.include(event.error.message, `"${C}"`)
        assert.include(event.error.message, "testing")
      }
    })))

  it.effect("suspension revokes as Suspended and empties retrieval; reconnecting shows the leader again", () =>
    withTesting(Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const testing = yield* HaTesting.HaTesting
      const retrieval = yield* ha.retrieve(C)
      const { election, recorder } = yield* campaign(C)
      const token = yield* testing.grant(C)
      yield* recorder.nextGrant
      yield* election.confirm(token, ADDRESS)
      yield* awaitRetrieved(retrieval, Option.some(token))

      yield* testing.suspend(C)
      assert.strictEqual((yield* recorder.nextRevoke).reason, "Suspended")
      yield* awaitRetrieved(retrieval, Option.none())
      // While suspended, the leader cannot publish.
      const second = yield* testing.grant(C)
      yield* recorder.nextGrant
      const unreachable = yield* Effect.flip(election.confirm(second, ADDRESS))
      assert.strictEqual(unreachable.reason, "Unreachable")

      yield* testing.reconnect(C)
      // The engine still holds what the first session published (as a real engine would until its lease ends).
      yield* awaitRetrieved(retrieval, Option.some(token))
      assert.isTrue(yield* election.confirm(second, ADDRESS))
      yield* awaitRetrieved(retrieval, Option.some(second))
    })))

  it.effect("retrieval is deduplicated and starts with the current value", () =>
    withTesting(Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const testing = yield* HaTesting.HaTesting
      const info = LeaderInformation.make(ADDRESS, LeaderToken.make(3, "s"))
      yield* testing.setPublished(C, Option.some(info))
      const retrieval = yield* ha.retrieve(C)
      yield* awaitRetrieved(retrieval, Option.some(info.token))
      const seen = yield* retrieval.changes.pipe(Stream.take(3), Stream.runCollect, Effect.forkChild)
      yield* Effect.yieldNow
      yield* testing.setPublished(C, Option.some(LeaderInformation.make(ADDRESS, LeaderToken.make(3, "s"))))
      yield* testing.setPublished(C, Option.some(info))
      yield* testing.setPublished(C, Option.none())
      yield* testing.setPublished(C, Option.none())
      const other = LeaderInformation.make("rpc://other:1/x", LeaderToken.make(4, "t"))
      yield* testing.setPublished(C, Option.some(other))
      const values = Array.from(yield* Fiber.join(seen))
      assert.deepStrictEqual(
        values.map((value) => Option.isSome(value) ? value.value.token.term : "none"),
        [3, "none", 4]
      )
      assert.strictEqual((yield* retrieval.await).address, "rpc://other:1/x")
    })))

  it.effect("rejects a campaign after shutdown, an empty component and an invalid address", () =>
    quiet(Effect.gen(function*() {
      const { driver } = yield* HaTesting.make
      const scope = yield* Scope.make()
      const ha = yield* HaServices.make(driver).pipe(Scope.provide(scope))
      const empty = yield* Effect.flip(ha.campaign("", (yield* record()).contender))
      assert.strictEqual(empty.reason, "InvalidConfiguration")
      assert.include(empty.message, "component name is empty")
      yield* Scope.close(scope, Exit.void)
      const closed = yield* Effect.flip(ha.campaign(C, (yield* record()).contender))
      assert.strictEqual(closed.reason, "Closed")
      assert.isTrue(HaError.isHaError(closed))
      assert.include(closed.message, `"${C}" on testing`)
      const noLeader = new HaError.NoLeaderError({ component: C })
      assert.include(noLeader.message, `No confirmed leader for ${C}`)
      assert.isTrue(HaError.isHaError(noLeader))
    })))

  it.effect("a confirmation with an address that is no well-formed string fails typed", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const { election, recorder } = yield* campaign(C)
      const token = yield* testing.grant(C)
      yield* recorder.nextGrant
      for (const address of ["", "rpc://x\uD800/y"]) {
        const error = yield* Effect.flip(election.confirm(token, address))
        assert.strictEqual(error.reason, "Rejected")
      }
      assert.isTrue(Option.isNone(yield* testing.published(C)))
    })))
})

describe("HaServices lease deadline (the leader's own clock)", () => {
  it.effect("revokes as Expired at the deadline, whatever the driver says, and hands the session back", () =>
    withTesting(Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const testing = yield* HaTesting.HaTesting
      const retrieval = yield* ha.retrieve(C)
      const { election, recorder } = yield* campaign(C)
      const token = yield* testing.grant(C, { leaseDeadline: 5_000 })
      const leadership = yield* recorder.nextGrant
      assert.strictEqual(leadership.leaseDeadline(), 5_000)
      yield* election.confirm(token, ADDRESS)
      yield* awaitRetrieved(retrieval, Option.some(token))

      yield* TestClock.adjust(4_999)
      assert.strictEqual(yield* recorder.pending, 0)
      assert.isTrue(yield* election.hasLeadership(token))
      yield* TestClock.adjust(1)
      const revocation = yield* recorder.nextRevoke
      assert.strictEqual(revocation.reason, "Expired")
      assert.isFalse(yield* election.hasLeadership(token))
      // The driver was told: the session is no longer the engine's leader, and its publication was withdrawn.
      assert.isTrue(Option.isNone(yield* testing.leader(C)))
      yield* awaitRetrieved(retrieval, Option.none())
    })))

  it.effect("renewals move the deadline forward; the watchdog follows them", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const { election, recorder } = yield* campaign(C)
      const token = yield* testing.grant(C, { leaseDeadline: 5_000 })
      yield* recorder.nextGrant
      yield* TestClock.adjust(4_000)
      yield* testing.renew(C, 10_000)
      yield* TestClock.adjust(5_000)
      assert.strictEqual(yield* recorder.pending, 0, "renewed at 4 s until 10 s: still leading at 9 s")
      assert.isTrue(yield* election.hasLeadership(token))
      yield* TestClock.adjust(1_000)
      assert.strictEqual((yield* recorder.nextRevoke).reason, "Expired")
    })))

  it.effect("a deadline already passed at the grant revokes at once", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      yield* TestClock.adjust(10_000)
      const { election, recorder } = yield* campaign(C)
      const token = yield* testing.grant(C, { leaseDeadline: 9_000 })
      yield* recorder.nextGrant
      assert.isFalse(yield* election.hasLeadership(token))
      assert.strictEqual((yield* recorder.nextRevoke).reason, "Expired")
    })))
})

describe("HaServices over the embedded driver", () => {
  it.effect("grants in campaign order with strictly increasing terms as each leader resigns in turn", () =>
    quiet(Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const retrieval = yield* ha.retrieve(C)
      const contenders = []
      for (let i = 0; i < 5; i++) contenders.push(yield* closeable(C))
      const terms: Array<number> = []
      for (let i = 0; i < contenders.length; i++) {
        const leadership = yield* contenders[i]!.recorder.nextGrant
        for (const other of contenders.slice(i + 1)) assert.strictEqual(yield* other.recorder.pending, 0)
        terms.push(leadership.token.term)
        yield* contenders[i]!.election.confirm(leadership.token, `rpc://c${i}`)
        assert.strictEqual(Option.getOrThrow(yield* awaitRetrieved(retrieval, Option.some(leadership.token))).address, `rpc://c${i}`)
        yield* contenders[i]!.close
      }
      assert.deepStrictEqual(terms, [1, 2, 3, 4, 5])
      yield* awaitRetrieved(retrieval, Option.none())
    }).pipe(Effect.provide(HaServices.layerEmbedded))))

  it.effect("components are independent", () =>
    quiet(Effect.gen(function*() {
      const a = yield* campaign("jobmaster/job-1")
      const b = yield* campaign("jobmaster/job-2")
      assert.strictEqual((yield* a.recorder.nextGrant).token.term, 1)
      assert.strictEqual((yield* b.recorder.nextGrant).token.term, 1)
    }).pipe(Effect.provide(HaServices.layerEmbedded))))
})

describe("README", () => {
  it.effect("the HA example: the contender confirms in its grant, retrieval awaits the leader", () =>
    quiet(Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const election = yield* ha.campaign("resourcemanager", {
        grant: (leadership) => Effect.ignore(leadership.confirm("rpc://127.0.0.1:6123/rm")),
        revoke: ({ reason }) => Effect.log(`stepped down: ${reason}`)
      })
      const leader = yield* ha.retrieve("resourcemanager")
      const { address, token } = yield* leader.await
      assert.strictEqual(address, "rpc://127.0.0.1:6123/rm")
      assert.isTrue(yield* election.hasLeadership(token))
    }).pipe(Effect.provide(HaServices.layerEmbedded))))
})

leaderElectionSuite("the embedded driver", {
  test: it.effect,
  layer: HaServices.layerEmbedded.pipe(Layer.provideMerge(Layer.succeed(References.MinimumLogLevel)("Warn"))),
  grant: () => Effect.void
})

leaderElectionSuite("the testing driver", {
  test: it.effect,
  layer: HaTesting.layer.pipe(Layer.provideMerge(Layer.succeed(References.MinimumLogLevel)("Warn"))),
  grant: (component) => Effect.flatMap(HaTesting.HaTesting, (testing) => testing.grant(component))
})
