/**
 * Fencing tokens as a leader's session uses them: gateways that declare their token (checked at compile time and at
 * connect), tokens set from outside the main thread in mailbox order, cleared at once, valid until a deadline by
 * the endpoint's own clock, and monotonic fencing for a follower of successive leaders. Run in-process and over TCP.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Order, Schema } from "effect"
import { TestClock } from "effect/testing"
import { RpcEndpoint, RpcError, RpcGateway } from "effect-actor-rpc"
import { startOn } from "./behaviour.js"
import { settle } from "./fixtures/common.js"
import { local, tcp } from "./fixtures/transports.js"

/** A leader's token: the term orders leaderships. */
class Session extends Schema.Class<Session>("Session")({ term: Schema.Number, id: Schema.String }) {}

const SessionOrder: Order.Order<Session> = Order.mapInput(Order.Number, (session: Session) => session.term)

const Jobs = RpcGateway.make("Jobs", {
  status: RpcGateway.ask({ success: Schema.String }),
  note: RpcGateway.tell({ payload: Schema.String }),
  /** Holds the main thread until released, so that later messages queue behind it. */
  hold: RpcGateway.ask({})
}, { token: Session })

const Plain = RpcGateway.make("Plain", { status: RpcGateway.ask({ success: Schema.String }) })

const s1 = new Session({ term: 1, id: "a" })
const s2 = new Session({ term: 2, id: "b" })

/** A fenced Jobs endpoint whose token Schema comes from the gateway; `hold` waits for `gate`. */
const jobs = (options: {
  readonly initialToken?: Session
  readonly monotonic?: boolean
  readonly gate?: Deferred.Deferred<void>
  readonly notes?: Array<string>
}) =>
  RpcEndpoint.makeFenced({
    id: "jobs",
    gateways: [Jobs],
    initialToken: options.initialToken,
    monotonic: options.monotonic === true ? SessionOrder : undefined,
    init: () =>
      Effect.succeed({
        handlers: {
          status: () => Effect.succeed("running"),
          note: (text: string) => Effect.sync(() => void options.notes?.push(text)),
          hold: () => options.gate === undefined ? Effect.void : Deferred.await(options.gate)
        }
      })
  })

const plain = RpcEndpoint.make({
  id: "plain",
  gateways: [Plain],
  init: () => Effect.succeed({ handlers: { status: () => Effect.succeed("plain") } })
})

const reasonOf = (error: unknown) => (error as RpcError.FencingTokenError).reason

describe("fencing tokens", () => {
  it("a gateway declares its token: connectFenced is type-checked against it", () => {
    // Compile-time only: the calls below are never run.
    const check = (service: { connectFenced: import("effect-actor-rpc").RpcService.RpcServiceShape["connectFenced"] }) => {
      // @ts-expect-error a number is not a Session
      service.connectFenced("local://x/jobs", 1, Jobs)
      // A gateway that declares no token takes any token, checked by the endpoint at connect.
      service.connectFenced("local://x/plain", 1, Plain)
      return service.connectFenced("local://x/jobs", s1, Jobs)
    }
    assert.isFunction(check)
    assert.strictEqual(Jobs.token, Session)
    assert.isUndefined(Plain.token)
    // The token Schema is part of the fingerprint: a Jobs gateway with another token is another protocol.
    const other = RpcGateway.make("Jobs", { ...Jobs.methods }, { token: Schema.String })
    assert.notStrictEqual(other.fingerprint, Jobs.fingerprint)
    const undeclared = RpcGateway.make("Jobs", { ...Jobs.methods })
    assert.notStrictEqual(undeclared.fingerprint, Jobs.fingerprint)
  })

  it("makeFenced takes its token Schema from the gateways, and refuses gateways that disagree", () => {
    assert.strictEqual(jobs({}).fencing?.schema, Session)
    const Other = RpcGateway.make("Other", { status: RpcGateway.ask({ success: Schema.String }) }, { token: Schema.String })
    assert.throws(() =>
      RpcEndpoint.makeFenced({
        gateways: [Jobs, Other],
        init: () => Effect.never
      }), /declares another token Schema/)
    assert.throws(() =>
      RpcEndpoint.makeFenced({
        gateways: [Plain],
        init: () => Effect.never
      }), /needs the token's Schema/)
  })

  for (const transport of [local, tcp]) {
    describe(transport.name, () => {
      it.live("a token the gateway's Schema rejects fails the connect with InvalidToken, before any call", () =>
        Effect.gen(function*() {
          const { client, server } = yield* transport.pair()
          const endpoint = yield* startOn(server, jobs({ initialToken: s1 }))
          const error = yield* Effect.flip(client.connectFenced(endpoint.address, { term: "one" } as never, Jobs))
          assert.instanceOf(error, RpcError.RpcConnectionError)
          assert.strictEqual((error as RpcError.RpcConnectionError).reason, "InvalidToken")
          assert.include(error.message, "Jobs")
        }).pipe(Effect.scoped))

      it.live("a token the endpoint's Schema rejects (through an undeclared gateway) fails with InvalidToken at connect", () =>
        Effect.gen(function*() {
          const { client, server } = yield* transport.pair()
          const Loose = RpcGateway.make("Loose", { status: RpcGateway.ask({ success: Schema.String }) })
          const endpoint = yield* startOn(
            server,
            RpcEndpoint.makeFenced({
              id: "loose",
              gateways: [Loose],
              token: Schema.Number,
              initialToken: 7,
              init: () => Effect.succeed({ handlers: { status: () => Effect.succeed("ok") } })
            })
          )
          const error = yield* Effect.flip(client.connectFenced(endpoint.address, "seven", Loose))
          assert.strictEqual((error as RpcError.RpcConnectionError).reason, "InvalidToken")
          assert.include(error.message, "seven")
          const good = yield* client.connectFenced(endpoint.address, 7, Loose)
          assert.strictEqual(yield* good.status(), "ok")
        }).pipe(Effect.scoped))

      it.live("connectFenced to an endpoint that is not fenced fails with NotFenced", () =>
        Effect.gen(function*() {
          const { client, server } = yield* transport.pair()
          const endpoint = yield* startOn(server, plain)
          const error = yield* Effect.flip(client.connectFenced(endpoint.address, "token", Plain))
          assert.instanceOf(error, RpcError.RpcConnectionError)
          assert.strictEqual((error as RpcError.RpcConnectionError).reason, "NotFenced")
          assert.include(error.message, "RpcService.connect")
          assert.strictEqual(yield* (yield* client.connect(endpoint.address, Plain)).status(), "plain")
        }).pipe(Effect.scoped))

      it.live("a declared token class crosses the wire in its encoded form and is read back as the class", () =>
        Effect.gen(function*() {
          const { client, server } = yield* transport.pair()
          const endpoint = yield* startOn(server, jobs({ initialToken: s1 }))
          const leader = yield* client.connectFenced(endpoint.address, new Session({ term: 1, id: "a" }), Jobs)
          assert.strictEqual(yield* leader.status(), "running")
          const stale = yield* client.connectFenced(endpoint.address, s2, Jobs)
          const error = yield* Effect.flip(stale.status())
          assert.strictEqual(reasonOf(error), "Mismatch")
          assert.include(error.message, "\"term\":2")
        }).pipe(Effect.scoped))

      it.live("server.setFencingToken takes effect in mailbox order and completes once in force; clearFencingToken rejects at once, even what was queued before", () =>
        Effect.gen(function*() {
          const { client, server } = yield* transport.pair()
          const gate = yield* Deferred.make<void>()
          const endpoint = yield* startOn(server, jobs({ gate }))
          const asS1 = yield* client.connectFenced(endpoint.address, s1, Jobs)
          assert.strictEqual(reasonOf(yield* Effect.flip(asS1.status())), "NotSet")
          yield* endpoint.setFencingToken(s1)
          assert.deepStrictEqual(yield* endpoint.fencingToken, Option.some(s1))
          // The main thread is held; an ask queues behind it, then the token is cleared from outside.
          const held = yield* Effect.forkChild(asS1.hold())
          yield* settle
          const queued = yield* Effect.forkChild(asS1.status())
          yield* Effect.sleep("50 millis")
          yield* endpoint.clearFencingToken
          yield* Deferred.succeed(gate, undefined)
          yield* Fiber.join(held)
          assert.strictEqual(reasonOf(yield* Effect.flip(Fiber.join(queued))), "NotSet", "rejected although queued before")
          // A new leadership: set in order, then served.
          const asS2 = yield* client.connectFenced(endpoint.address, s2, Jobs)
          yield* endpoint.setFencingToken(s2)
          assert.strictEqual(yield* asS2.status(), "running")
          assert.strictEqual(reasonOf(yield* Effect.flip(asS1.status())), "Mismatch")
        }).pipe(Effect.scoped))

      it.live("monotonic fencing admits the newest leader seen and refuses an older one as Stale", () =>
        Effect.gen(function*() {
          const { client, server } = yield* transport.pair()
          const notes: Array<string> = []
          const endpoint = yield* startOn(server, jobs({ monotonic: true, notes }))
          const first = yield* client.connectFenced(endpoint.address, s1, Jobs)
          const second = yield* client.connectFenced(endpoint.address, s2, Jobs)
          assert.strictEqual(yield* first.status(), "running", "the first leader is admitted")
          yield* first.note("from 1")
          assert.strictEqual(yield* second.status(), "running", "a newer one is admitted")
          assert.deepStrictEqual(yield* endpoint.fencingToken, Option.some(s2))
          const stale = yield* Effect.flip(first.status())
          assert.strictEqual(reasonOf(stale), "Stale")
          assert.include(stale.message, "\"term\":1")
          yield* first.note("late from 1")
          yield* second.note("from 2")
          assert.strictEqual(yield* second.status(), "running")
          assert.deepStrictEqual(notes, ["from 1", "from 2"], "the old leader's late tell was dropped")
          const unfenced = yield* client.connect(endpoint.address, Jobs)
          assert.strictEqual(reasonOf(yield* Effect.flip(unfenced.status())), "Missing")
        }).pipe(Effect.scoped))
    })
  }

  it.effect("a token set with validUntil stops admitting messages at that time, by the endpoint's clock (Expired)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* local.pair()
      const endpoint = yield* startOn(server, jobs({}))
      let deadline = 1_000
      yield* endpoint.setFencingToken(s1, { validUntil: () => deadline })
      const leader = yield* client.connectFenced(endpoint.address, s1, Jobs)
      assert.strictEqual(yield* leader.status(), "running")
      yield* TestClock.adjust("999 millis")
      assert.strictEqual(yield* leader.status(), "running", "still within the lease")
      yield* TestClock.adjust("1 millis")
      const expired = yield* Effect.flip(leader.status())
      assert.strictEqual(reasonOf(expired), "Expired")
      assert.include(expired.message, "lease")
      // A renewed lease moves the deadline forward: the same token admits again.
      deadline = 5_000
      assert.strictEqual(yield* leader.status(), "running")
      // Work the endpoint queued for itself is dropped too once the deadline has passed.
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(reasonOf(yield* Effect.flip(leader.status())), "Expired")
    }).pipe(Effect.scoped))

  it.effect("server.setFencingToken on a terminated endpoint fails RecipientUnreachableError", () =>
    Effect.gen(function*() {
      const { server } = yield* local.pair()
      const handle = yield* server.startServer(jobs({}))
      yield* handle.terminate
      const error = yield* Effect.flip(handle.setFencingToken(s1))
      assert.instanceOf(error, RpcError.RecipientUnreachableError)
    }).pipe(Effect.scoped))
})
