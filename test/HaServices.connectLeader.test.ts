/**
 * Clients that follow the leader (`HaServices.connectLeader`), on the TestClock with the testing driver: ports of
 * Flink's `RetryingRegistrationTest` (success, connect retried after an error, timeouts doubling, a decline pausing,
 * an error pausing, cancellation) and `RegisteredRpcConnectionTest` (success, close, reconnect), the connection-handling
 * cases (suspended → no leader; reconnect → the same or a new leader), and the two ways of waiting for a leader.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Fiber, Layer, Option, References, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  HaError,
  HaServices,
  HaTesting,
  LeaderInformation,
  LeaderToken,
  RpcEndpoint,
  RpcError,
  RpcGateway,
  RpcService
} from "effect-actor-rpc"
import { settle } from "./fixtures/common.js"

const C = "resourcemanager"

const Registry = RpcGateway.make("Registry", {
  register: RpcGateway.ask({ payload: Schema.String, success: Schema.String, failure: HaError.RegistrationRefusedError }),
  work: RpcGateway.ask({ payload: Schema.Number, success: Schema.String }),
  note: RpcGateway.tell({ payload: Schema.String })
}, { token: LeaderToken.LeaderToken })

/** How the registry answers the next registration: success with an id, never, a refusal, or an error. */
type Response = { readonly _tag: "Success"; readonly id: string } | { readonly _tag: "Timeout" } | {
  readonly _tag: "Refuse"
} | { readonly _tag: "Error" }

const success = (id: string): Response => ({ _tag: "Success", id })
const timeout: Response = { _tag: "Timeout" }
const refuse: Response = { _tag: "Refuse" }
const error: Response = { _tag: "Error" }

interface Invocation {
  readonly follower: string
  readonly at: number
  readonly token: Option.Option<LeaderToken.LeaderToken>
}

/** A registry endpoint serving with `token`; its registrations answer as `responses` say (the last one repeats). */
const registry = (id: string, token: LeaderToken.LeaderToken | undefined, responses: ReadonlyArray<Response>) => {
  const invocations: Array<Invocation> = []
  const notes: Array<string> = []
  const endpoint = RpcEndpoint.makeFenced({
    id,
    gateways: [Registry],
    initialToken: token,
    init: (main) =>
      Effect.succeed({
        handlers: {
          register: (follower: string) =>
            Effect.gen(function*() {
              const at = yield* Clock.currentTimeMillis
              invocations.push({ follower, at, token: yield* main.fencingToken })
              const response = responses[Math.min(invocations.length, responses.length) - 1]!
              switch (response._tag) {
                case "Success":
                  return response.id
                case "Timeout":
                  return RpcEndpoint.later(Effect.never)
                case "Refuse":
                  return yield* new HaError.RegistrationRefusedError({ reason: "no capacity" })
                case "Error":
                  return yield* Effect.die(new Error("registry failure"))
              }
            }),
          work: (n: number) => Effect.map(main.fencingToken, (t) => `${id}:${n}@${Option.getOrThrow(t).term}`),
          note: (text: string) => Effect.sync(() => void notes.push(text))
        }
      })
  })
  return { endpoint, invocations, notes }
}

const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

const withTesting = <A, E>(
  self: Effect.Effect<A, E, HaServices.HaServices | HaTesting.HaTesting | RpcService.RpcService | Scope.Scope>
) => self.pipe(Effect.provide(Layer.merge(HaTesting.layer, RpcService.layerLocal())), quiet)

/** Starts `endpoint` and publishes it as the leader of C with `token` (the testing driver's stray write). */
const publishLeader = (
  endpoint: RpcEndpoint.RpcEndpoint<readonly [typeof Registry], LeaderToken.LeaderToken, never, never, never>,
  token: LeaderToken.LeaderToken
) =>
  Effect.gen(function*() {
    const testing = yield* HaTesting.HaTesting
    const server = yield* RpcEndpoint.scoped(endpoint)
    yield* testing.setPublished(C, Option.some(LeaderInformation.make(server.address, token)))
    return server
  })

const fast = {
  initialTimeout: "20 millis",
  maxTimeout: "1 second",
  delayOnError: "200 millis",
  delayOnRefusal: "300 millis"
} as const

const t1 = LeaderToken.make(1, "one")
const t2 = LeaderToken.make(2, "two")

/** A follower that registers as "te-1" and keeps the timeouts it was given. */
const follower = (options: { readonly wait?: boolean } = {}) =>
  Effect.gen(function*() {
    const timeouts: Array<number> = []
    const client = yield* HaServices.connectLeader(C, Registry, {
      retry: fast,
      ...(options.wait === true ? { whileNoLeader: "wait" as const } : {}),
      register: ({ client, timeout }) => {
        timeouts.push(Duration.toMillis(timeout))
        return client.register("te-1", { timeout })
      }
    })
    return { client, timeouts }
  })

const stateTag = <A>(connection: HaServices.LeaderConnection<A>) => Effect.map(connection.state, (state) => state._tag)

describe("HaServices.connectLeader (RetryingRegistrationTest)", () => {
  it.effect("a successful registration: Registered with its result, and the registration carried the leader's token", () =>
    withTesting(Effect.gen(function*() {
      const { endpoint, invocations } = registry("rm", t1, [success("laissez les bons temps rouler")])
      const server = yield* publishLeader(endpoint, t1)
      const { client } = yield* follower()
      const registered = yield* client.connection.registered
      assert.strictEqual(registered.registration, "laissez les bons temps rouler")
      assert.strictEqual(registered.leader.address, server.address)
      assert.isTrue(LeaderToken.Equivalence(registered.leader.token, t1))
      assert.strictEqual(invocations.length, 1)
      assert.deepStrictEqual(invocations[0]!.token, Option.some(t1))
      assert.strictEqual(client.address, server.address)
      assert.strictEqual(yield* client.work(7), `rm:7@1`)
    })))

  it.effect("a connect that fails is retried after the error delay", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const service = yield* RpcService.RpcService
      const { endpoint } = registry("late", t1, [success("ok")])
      // Published before the endpoint exists: the connect fails (unknown endpoint).
      yield* testing.setPublished(C, Option.some(LeaderInformation.make(service.address("late"), t1)))
      const { client } = yield* follower()
      yield* settle
      assert.strictEqual(yield* stateTag(client.connection), "Connecting")
      yield* RpcEndpoint.scoped(endpoint)
      yield* TestClock.adjust("199 millis")
      assert.strictEqual(yield* stateTag(client.connection), "Connecting", "still pausing after the error")
      yield* TestClock.adjust("1 millis")
      yield* settle
      const registered = yield* client.connection.registered
      assert.strictEqual(registered.registration, "ok")
      assert.isAtLeast(yield* Clock.currentTimeMillis, 200)
    })))

  it.effect("attempts that time out are tried again at once, each with twice the timeout", () =>
    withTesting(Effect.gen(function*() {
      const { endpoint, invocations } = registry("rm", t1, [timeout, timeout, success("rien ne va plus")])
      yield* publishLeader(endpoint, t1)
      const { client, timeouts } = yield* follower()
      const registering = yield* Effect.forkChild(client.connection.registered)
      yield* settle
      yield* TestClock.adjust("20 millis")
      yield* settle
      yield* TestClock.adjust("40 millis")
      const registered = yield* Fiber.join(registering)
      assert.strictEqual(registered.registration, "rien ne va plus")
      assert.deepStrictEqual(timeouts, [20, 40, 80])
      assert.deepStrictEqual(invocations.map((i) => i.at), [0, 20, 60])
    })))

  it.effect("a refusal pauses for the refusal delay, then attempts start over from the initial timeout", () =>
    withTesting(Effect.gen(function*() {
      const { endpoint, invocations } = registry("rm", t1, [timeout, refuse, timeout, success("qui a coupé le fromage")])
      yield* publishLeader(endpoint, t1)
      const { client, timeouts } = yield* follower()
      const registering = yield* Effect.forkChild(client.connection.registered)
      for (const step of [20, 300, 20]) {
        yield* settle
        yield* TestClock.adjust(step)
      }
      const registered = yield* Fiber.join(registering)
      assert.strictEqual(registered.registration, "qui a coupé le fromage")
      assert.deepStrictEqual(timeouts, [20, 40, 20, 40])
      assert.deepStrictEqual(invocations.map((i) => i.at), [0, 20, 320, 340])
    })))

  it.effect("any other failure pauses for the error delay", () =>
    withTesting(Effect.gen(function*() {
      const { endpoint, invocations } = registry("rm", t1, [error, success("petit à petit")])
      yield* publishLeader(endpoint, t1)
      const { client } = yield* follower()
      yield* settle
      yield* TestClock.adjust("199 millis")
      assert.strictEqual(invocations.length, 1)
      yield* TestClock.adjust("1 millis")
      const registered = yield* client.connection.registered
      assert.strictEqual(registered.registration, "petit à petit")
      assert.deepStrictEqual(invocations.map((i) => i.at), [0, 200])
    })))

  it.effect("closing cancels the registration: no further attempt, and calls fail at once", () =>
    withTesting(Effect.gen(function*() {
      const { endpoint, invocations } = registry("rm", t1, [timeout])
      yield* publishLeader(endpoint, t1)
      const scope = yield* Scope.make()
      const { client } = yield* follower().pipe(Scope.provide(scope))
      yield* settle
      assert.strictEqual(invocations.length, 1)
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("10 seconds")
      yield* settle
      assert.strictEqual(invocations.length, 1)
      assert.strictEqual(yield* stateTag(client.connection), "Closed")
      const closed = yield* Effect.flip(client.work(1))
      assert.instanceOf(closed, RpcError.RecipientUnreachableError)
      assert.include(closed.message, "closed")
    })))

  it.effect("refuses a retry configuration that cannot work, a reserved method name and another token Schema", () =>
    withTesting(Effect.gen(function*() {
      const bad = yield* Effect.flip(HaServices.connectLeader(C, Registry, { retry: { initialTimeout: 0 } }))
      assert.strictEqual(bad.reason, "InvalidConfiguration")
      assert.include(bad.message, "initial timeout")
      const inverted = yield* Effect.flip(
        HaServices.connectLeader(C, Registry, { retry: { initialTimeout: "2 seconds", maxTimeout: "1 second" } })
      )
      assert.include(inverted.message, "maximum timeout")
      const Clashing = RpcGateway.make("Clashing", { connection: RpcGateway.ask({}) })
      const clash = yield* Effect.flip(HaServices.connectLeader(C, Clashing))
      assert.include(clash.message, `"connection"`)
      const OtherToken = RpcGateway.make("OtherToken", { work: RpcGateway.ask({}) }, { token: Schema.String })
      const other = yield* Effect.flip(HaServices.connectLeader(C, OtherToken))
      assert.include(other.message, "LeaderToken")
    })))
})

describe("HaServices.connectLeader (RegisteredRpcConnectionTest and connection handling)", () => {
  it.effect("reconnect registers again with the same leader", () =>
    withTesting(Effect.gen(function*() {
      const { endpoint, invocations } = registry("rm", t1, [success("connection 1"), success("connection 2")])
      yield* publishLeader(endpoint, t1)
      const { client } = yield* follower()
      assert.strictEqual((yield* client.connection.registered).registration, "connection 1")
      yield* client.connection.reconnect
      yield* settle
      assert.strictEqual((yield* client.connection.registered).registration, "connection 2")
      assert.strictEqual(invocations.length, 2)
    })))

  it.effect("suspended: no leader, calls fail at once with NoLeaderError; reconnected: the same leader again", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const { endpoint } = registry("rm", t1, [success("a"), success("b")])
      yield* publishLeader(endpoint, t1)
      const { client } = yield* follower()
      yield* client.connection.registered
      const states: Array<string> = []
      yield* Effect.forkChild(Stream.runForEach(client.connection.states, (state) => Effect.sync(() => states.push(state._tag))))
      yield* settle

      yield* testing.suspend(C)
      yield* settle
      const failed = yield* Effect.flip(client.work(1))
      assert.instanceOf(failed, HaError.NoLeaderError)
      assert.include(failed.message, C)
      assert.strictEqual(yield* Clock.currentTimeMillis, 0, "at once")

      yield* testing.reconnect(C)
      const again = yield* client.connection.registered
      assert.isTrue(LeaderToken.Equivalence(again.leader.token, t1))
      assert.strictEqual(again.registration, "b")
      assert.strictEqual(yield* client.work(2), "rm:2@1")
      assert.deepStrictEqual(states, ["Registered", "NoLeader", "Connecting", "Registered"])
    })))

  it.effect("a new leader: the registration in progress is abandoned, the client registers with the new one and calls carry its token", () =>
    withTesting(Effect.gen(function*() {
      const old = registry("old", t1, [timeout])
      const next = registry("new", t2, [success("with the new leader")])
      yield* publishLeader(old.endpoint, t1)
      const { client } = yield* follower()
      yield* settle
      assert.strictEqual(old.invocations.length, 1)
      yield* publishLeader(next.endpoint, t2)
      const registered = yield* client.connection.registered
      assert.strictEqual(registered.registration, "with the new leader")
      assert.deepStrictEqual(next.invocations[0]!.token, Option.some(t2))
      assert.strictEqual(yield* client.work(3), "new:3@2")
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(old.invocations.length, 1, "nothing more went to the old leader")
    })))

  it.effect("calls made while registering wait for the registration, within their timeout", () =>
    withTesting(Effect.gen(function*() {
      const { endpoint } = registry("rm", t1, [timeout, success("ok")])
      yield* publishLeader(endpoint, t1)
      const { client } = yield* follower()
      yield* settle
      const call = yield* Effect.forkChild(client.work(4))
      yield* settle
      assert.isUndefined(call.pollUnsafe())
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(yield* Fiber.join(call), "rm:4@1")
      // A call whose timeout ends before the registration fails with RpcTimeoutError naming the leader.
      const { endpoint: slow } = registry("slow", t2, [timeout])
      yield* publishLeader(slow, t2)
      yield* settle
      const late = yield* Effect.forkChild(Effect.flip(client.work(5, { timeout: "50 millis" })))
      yield* settle
      yield* TestClock.adjust("50 millis")
      const timedOut = yield* Fiber.join(late)
      assert.instanceOf(timedOut, RpcError.RpcTimeoutError)
      assert.include(timedOut.message, "Registry.work")
      assert.include(timedOut.message, "slow")
    })))

  it.effect("whileNoLeader wait: calls wait for a leader within their own timeout, then fail RpcTimeoutError", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const { client } = yield* follower({ wait: true })
      const waiting = yield* Effect.forkChild(client.work(1, { timeout: "1 second" }))
      const tell = yield* Effect.forkChild(client.note("hello", { timeout: "1 second" }))
      yield* settle
      yield* TestClock.adjust("500 millis")
      const { endpoint, notes } = registry("rm", t1, [success("ok")])
      yield* publishLeader(endpoint, t1)
      assert.strictEqual(yield* Fiber.join(waiting), "rm:1@1")
      yield* Fiber.join(tell)
      yield* settle
      assert.deepStrictEqual(notes, ["hello"])

      yield* testing.setPublished(C, Option.none())
      yield* settle
      const late = yield* Effect.forkChild(Effect.flip(client.work(2, { timeout: "1 second" })))
      yield* settle
      yield* TestClock.adjust("1 second")
      const timedOut = yield* Fiber.join(late)
      assert.instanceOf(timedOut, RpcError.RpcTimeoutError)
      assert.strictEqual(timedOut.timeoutMillis, 1000)
    })))

  it.effect("an ask the leader rejects by fencing: passed on by default; with whileNoLeader wait, sent again to the next leader", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      // The endpoint has moved on to t2, but retrieval still shows t1 (a confirmation on its way).
      const { endpoint } = registry("rm", t2, [success("ok")])
      const server = yield* RpcEndpoint.scoped(endpoint)
      yield* testing.setPublished(C, Option.some(LeaderInformation.make(server.address, t1)))
      const failing = yield* HaServices.connectLeader(C, Registry)
      const waiting = yield* HaServices.connectLeader(C, Registry, { whileNoLeader: "wait" })
      yield* failing.connection.registered
      yield* waiting.connection.registered
      const rejected = yield* Effect.flip(failing.work(1))
      assert.instanceOf(rejected, RpcError.FencingTokenError)
      const retried = yield* Effect.forkChild(waiting.work(2, { timeout: "5 seconds" }))
      yield* settle
      assert.isUndefined(retried.pollUnsafe(), "waits for another leader than the one that refused it")
      yield* testing.setPublished(C, Option.some(LeaderInformation.make(server.address, t2)))
      assert.strictEqual(yield* Fiber.join(retried), "rm:2@2")
    })))

  it.effect("follows leader endpoints: a failover moves the calls to the new leader with its token", () =>
    Effect.gen(function*() {
      const a = registry("a", undefined, [success("at a")])
      const b = registry("b", undefined, [success("at b")])
      const scopeA = yield* Scope.make()
      yield* HaServices.leaderEndpoint(C, a.endpoint).pipe(Scope.provide(scopeA))
      yield* HaServices.leaderEndpoint(C, b.endpoint)
      const { client } = yield* follower()
      assert.strictEqual((yield* client.connection.registered).registration, "at a")
      const first = yield* client.work(1)
      assert.match(first, /^a:1@\d+$/)
      yield* Scope.close(scopeA, Exit.void)
      const registered = yield* client.connection.states.pipe(
        Stream.filter((state) => state._tag === "Registered"),
        Stream.runHead,
        Effect.map(Option.getOrThrow)
      )
      assert.strictEqual(registered._tag === "Registered" && registered.registration, "at b")
      const second = yield* client.work(2)
      assert.match(second, /^b:2@\d+$/)
      assert.isAbove(Number(second.split("@")[1]), Number(first.split("@")[1]))
    }).pipe(Effect.provide(Layer.merge(HaServices.layerEmbedded, RpcService.layerLocal())), quiet))

  it("a waiting leader client is a RpcGateway.Client<G>; a failing one may also fail with NoLeaderError", () => {
    // Compile-time only.
    const check = (
      waiting: HaServices.LeaderClient<typeof Registry, never>,
      failing: HaServices.LeaderClient<typeof Registry>
    ) => {
      const asClient: RpcGateway.Client<typeof Registry> = waiting
      // @ts-expect-error NoLeaderError is not among a plain client's errors
      const notAClient: RpcGateway.Client<typeof Registry> = failing
      const call: Effect.Effect<string, RpcError.RpcCallError | HaError.NoLeaderError> = failing.work(1)
      return [asClient, notAClient, call]
    }
    assert.isFunction(check)
  })
})

describe("README", () => {
  it.effect("the high-availability example: a leader endpoint Layer and a client that follows the leader", () => {
    const JobMasterGateway = RpcGateway.make("JobMasterGateway", {
      submitJob: RpcGateway.ask({ payload: Schema.String, success: Schema.String })
    }, { token: LeaderToken.LeaderToken })
    const JobMaster = RpcEndpoint.makeFenced({
      id: "jobmaster",
      gateways: [JobMasterGateway],
      init: () => Effect.succeed({ handlers: { submitJob: (job) => Effect.succeed(`${job} accepted`) } })
    })
    const JobMasterProcess = HaServices.layerLeaderEndpoint("jobmaster", JobMaster)
    const program = Effect.gen(function*() {
      const jobMaster = yield* HaServices.connectLeader("jobmaster", JobMasterGateway, { whileNoLeader: "wait" })
      const accepted = yield* jobMaster.submitJob("job-1")
      const state = yield* jobMaster.connection.state
      return { accepted, state: state._tag }
    })
    return program.pipe(
      Effect.scoped,
      Effect.provide(
        JobMasterProcess.pipe(Layer.provideMerge(Layer.mergeAll(HaServices.layerEmbedded, RpcService.layerLocal())))
      ),
      Effect.map((result) => assert.deepStrictEqual(result, { accepted: "job-1 accepted", state: "Registered" })),
      quiet
    )
  })
})
