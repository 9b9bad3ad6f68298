/**
 * A property over recorded histories of random kills, pauses and partitions (TestClock, the simulated lease engine of
 * test/fixtures/simulatedEngine.ts): three contender processes run leader endpoints; each leader keeps reporting to a
 * follower fenced monotonically, with the token of its last confirmed session, also for a while after it has stepped
 * down and while it is paused (then all at once when it resumes: a deposed leader's late work); a client follows the
 * leader with `connectLeader` and keeps calling it. Whatever the schedule of faults:
 *
 * 1. the follower never applies a message from a term lower than one it has already applied (monotonic fencing);
 * 2. no two leaderships overlap: each one has ended (revoked, or past its lease deadline) before the next is confirmed;
 * 3. a leader endpoint applies a client's call only within its session (before its revocation and its deadline).
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Option, References, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import { HaServices, LeaderToken, RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"
import { settle } from "./fixtures/common.js"
import * as Simulated from "./fixtures/simulatedEngine.js"

const C = "jobmaster"
const TTL = 1000
const MARGIN = 250
const KEEPALIVE = 200
const STEP = 50
/** Virtual time each history covers. */
const HORIZON = 12_000
/** How long a deposed leader keeps sending with its old token (its work in flight). */
const LATE_WORK = 300

const Work = RpcGateway.make("Work", { apply: RpcGateway.ask({ payload: Schema.Number }) }, {
  token: LeaderToken.LeaderToken
})
const Follower = RpcGateway.make("Follower", {
  record: RpcGateway.ask({ payload: Schema.Struct({ from: Schema.Number, term: Schema.Number }) })
}, { token: LeaderToken.LeaderToken })

const Fault = Schema.Struct({
  at: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: HORIZON - 3000 })),
  kind: Schema.Literals(["kill", "pause", "partition"]),
  target: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2 })),
  duration: Schema.Int.check(Schema.isBetween({ minimum: 100, maximum: 3000 }))
})
type Fault = typeof Fault.Type

interface Tenure {
  readonly process: number
  readonly token: LeaderToken.LeaderToken
  readonly confirmedAt: number
  end: number | undefined
}

const quiet = Effect.provideService(References.MinimumLogLevel, "None")

const history = (faults: ReadonlyArray<Fault>) =>
  Effect.gen(function*() {
    const service = yield* RpcService.RpcService
    const engine = yield* Simulated.make({ ttl: TTL, margin: MARGIN, keepAlive: KEEPALIVE })

    const applied: Array<{ readonly from: number; readonly term: number }> = []
    const follower = yield* RpcEndpoint.scoped(RpcEndpoint.makeFenced({
      id: "follower",
      gateways: [Follower],
      monotonic: LeaderToken.Order,
      init: () => Effect.succeed({ handlers: { record: (entry) => Effect.sync(() => void applied.push(entry)) } })
    }))

    const tenures: Array<Tenure> = []
    /** Reports the follower refused (a deposed leader's, by monotonic fencing). */
    let refused = 0
    const applications: Array<{ readonly process: number; readonly term: number; readonly at: number }> = []
    const processes: Array<{ readonly process: Simulated.SimulatedProcess; readonly scope: Scope.Closeable }> = []

    const spawn = (id: number) =>
      Effect.gen(function*() {
        const process: Simulated.SimulatedProcess = { id, killed: false, pausedUntil: 0, partitionedUntil: 0 }
        const scope = yield* Scope.make()
        processes.push({ process, scope })
        const ha = yield* HaServices.make(engine.driverFor(process)).pipe(Scope.provide(scope))
        let last: { token: LeaderToken.LeaderToken; until: number } | undefined
        const worker = RpcEndpoint.makeFenced({
          id: `worker-${id}`,
          gateways: [Work],
          init: (main) =>
            Effect.succeed({
              handlers: {
                apply: () =>
                  Effect.gen(function*() {
                    const token = Option.getOrThrow(yield* main.fencingToken)
                    applications.push({ process: id, term: token.term, at: yield* Clock.currentTimeMillis })
                  })
              }
            })
        })
        yield* HaServices.leaderEndpoint(C, worker, {
          onConfirmed: (leadership) =>
            Effect.gen(function*() {
              const at = yield* Clock.currentTimeMillis
              tenures.push({ process: id, token: leadership.token, confirmedAt: at, end: undefined })
              last = { token: leadership.token, until: Number.POSITIVE_INFINITY }
            }),
          onRevoked: (revocation) =>
            Effect.gen(function*() {
              const at = yield* Clock.currentTimeMillis
              const tenure = tenures.find((t) => LeaderToken.Equivalence(t.token, revocation.token))
              if (tenure !== undefined) tenure.end = at
              if (last !== undefined && LeaderToken.Equivalence(last.token, revocation.token)) last.until = at + LATE_WORK
            })
        }).pipe(
          Effect.provideService(HaServices.HaServices, ha),
          Scope.provide(scope)
        )
        // Reports with the last confirmed token, also a while after stepping down; held while paused.
        yield* Effect.forkIn(
          Effect.forever(Effect.gen(function*() {
            yield* Effect.sleep(STEP)
            const at = yield* Clock.currentTimeMillis
            if (process.killed || at < process.pausedUntil || last === undefined || at > last.until) return
            const client = yield* service.connectFenced(follower.address, last.token, Follower).pipe(Effect.orDie)
            const outcome = yield* Effect.exit(client.record({ from: id, term: last.token.term }))
            if (Exit.isFailure(outcome)) refused += 1
          })),
          scope
        )
        // While paused, a process keeps the token it had: its late work all goes out at once when it resumes.
        return process
      })

    const live = [yield* spawn(0), yield* spawn(1), yield* spawn(2)]
    let nextId = 3

    // A client that follows the leader (itself never faulted) and keeps calling it.
    const clientProcess: Simulated.SimulatedProcess = { id: 99, killed: false, pausedUntil: 0, partitionedUntil: 0 }
    const clientHa = yield* HaServices.make(engine.driverFor(clientProcess))
    const client = yield* HaServices.connectLeader(C, Work, { whileNoLeader: "wait" }).pipe(
      Effect.provideService(HaServices.HaServices, clientHa)
    )
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(
      Effect.sleep(STEP),
      Effect.ignore(client.apply(1, { timeout: STEP * 4 }))
    )))

    const pending = [...faults].sort((a, b) => a.at - b.at)
    for (let at = 0; at <= HORIZON; at += STEP) {
      while (pending.length > 0 && pending[0]!.at <= at) {
        const fault = pending.shift()!
        const target = live[fault.target]!
        if (target.killed) continue
        switch (fault.kind) {
          case "kill":
            target.killed = true
            live[fault.target] = yield* spawn(nextId++)
            break
          case "pause":
            target.pausedUntil = at + fault.duration
            break
          case "partition":
            target.partitionedUntil = at + fault.duration
            break
        }
      }
      yield* engine.tick(at)
      yield* settle
      yield* TestClock.adjust(STEP)
      yield* settle
    }

    // The properties.
    for (let i = 1; i < applied.length; i++) {
      assert.isAtLeast(applied[i]!.term, applied[i - 1]!.term, `monotonic fencing: ${JSON.stringify(applied)}`)
    }
    const ordered = [...tenures].sort((a, b) => a.token.term - b.token.term)
    for (let i = 1; i < ordered.length; i++) {
      const before = ordered[i - 1]!
      const after = ordered[i]!
      assert.isAbove(after.token.term, before.token.term)
      const ended = before.end ?? Number.POSITIVE_INFINITY
      assert.isAtMost(
        ended,
        after.confirmedAt,
        `process ${before.process} led term ${before.token.term} until ${ended}; process ${after.process} was ` +
          `confirmed for term ${after.token.term} at ${after.confirmedAt}`
      )
    }
    for (const application of applications) {
      const tenure = ordered.find((t) => t.token.term === application.term)
      assert.isDefined(tenure, `an application under term ${application.term}, which was never confirmed`)
      assert.isAtMost(application.at, tenure!.end ?? Number.POSITIVE_INFINITY, JSON.stringify(application))
    }
    assert.isAbove(ordered.length, 0, "nobody ever led")
    for (const { scope } of processes) yield* Scope.close(scope, Exit.void)
    return { leaderships: ordered.length, applied: applied.length, applications: applications.length, refused }
  })

describe("HaServices properties", () => {
  it.effect.prop(
    "over random kills, pauses and partitions: monotonic fencing holds and no two leaderships overlap",
    [Schema.Array(Fault).check(Schema.isMaxLength(6))],
    ([faults]) => quiet(history(faults).pipe(Effect.provide(RpcService.layerLocal()))),
    { timeout: 120_000, arbitrary: { runs: 12 } }
  )

  it.effect("one recorded history: the leader paused past its lease, then partitioned; its late reports are refused", () =>
    quiet(Effect.gen(function*() {
      const outcome = yield* history([
        { at: 2000, kind: "pause", target: 0, duration: 2500 },
        { at: 6000, kind: "partition", target: 1, duration: 2000 },
        { at: 8500, kind: "kill", target: 2, duration: 100 }
      ])
      assert.isAtLeast(outcome.leaderships, 3)
      assert.isAbove(outcome.applications, 0)
      assert.isAbove(outcome.refused, 0, "the paused leader's late reports went out and were refused")
    }).pipe(Effect.provide(RpcService.layerLocal()))))
})
