/**
 * Properties of the main thread over random workloads: (1) asks, tells, runAsync and scheduleRunAsync from
 * several senders never overlap and keep per-sender order; (2) no sequence of fencing-token changes lets a
 * message with a stale token run.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import { RpcEndpoint, RpcError, RpcGateway } from "effect-actor-rpc"
import { service, withService, settle } from "./fixtures/common.js"

const small = (max: number) => Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: max }))

const Op = Schema.Struct({
  sender: small(3),
  kind: Schema.Literals(["ask", "tell", "runAsync", "scheduleRunAsync"]),
  delay: small(20),
  work: small(3)
})

const Record = Schema.Struct({ sender: Schema.Number, seq: Schema.Number, work: Schema.Number })

const OrderGateway = RpcGateway.make("OrderGateway", {
  ask: RpcGateway.ask({ payload: Record }),
  tell: RpcGateway.tell({ payload: Record })
})

const FencedOp = Schema.Struct({
  kind: Schema.Literals(["change", "call", "tell", "selfRun"]),
  token: small(3)
})

const FencingGateway = RpcGateway.make("FencingGateway", {
  change: RpcGateway.ask({ payload: Schema.Number }),
  call: RpcGateway.ask({ payload: Schema.Number }),
  tell: RpcGateway.tell({ payload: Schema.Number }),
  selfRun: RpcGateway.ask({})
})

describe("RpcEndpoint properties", () => {
  it.effect.prop(
    "random interleavings from several senders never overlap and keep per-sender order",
    [Schema.Array(Op)],
    ([ops]) =>
      Effect.gen(function*() {
        let active = 0
        let overlaps = 0
        const executed: Array<{ sender: number; seq: number; scheduled: boolean; at: number; due: number }> = []
        const run = (record: { sender: number; seq: number; work: number }, scheduled: boolean, due: number) =>
          Effect.gen(function*() {
            if (active++ > 0) overlaps++
            for (let i = 0; i < record.work; i++) yield* Effect.yieldNow
            const at = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
            executed.push({ sender: record.sender, seq: record.seq, scheduled, at, due })
            active--
          })
        let main!: RpcEndpoint.MainThread<readonly [typeof OrderGateway]>
        const endpoint = RpcEndpoint.make({
          gateways: [OrderGateway],
          init: (m) =>
            Effect.sync(() => {
              main = m
              return { handlers: { ask: (r) => run(r, false, 0), tell: (r) => run(r, false, 0) } }
            })
        })
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(endpoint)
        const client = yield* svc.connect(server.address, OrderGateway)
        const start = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
        const senders = [0, 1, 2, 3].map((sender) =>
          Effect.gen(function*() {
            let seq = 0
            for (const op of ops.filter((o) => o.sender === sender)) {
              const record = { sender, seq: seq++, work: op.work }
              switch (op.kind) {
                case "ask":
                  yield* client.ask(record)
                  break
                case "tell":
                  yield* client.tell(record)
                  break
                case "runAsync":
                  yield* main.runAsync(run(record, false, 0))
                  break
                case "scheduleRunAsync":
                  yield* main.scheduleRunAsync(run(record, true, start + op.delay), op.delay)
                  break
              }
            }
          })
        )
        const fibers = yield* Effect.forEach(senders, (sender) => Effect.forkChild(sender))
        yield* settle
        yield* TestClock.adjust(25)
        yield* settle
        yield* Fiber.joinAll(fibers)
        yield* main.callAsync(Effect.void, "1 minute")

        assert.strictEqual(overlaps, 0)
        assert.strictEqual(executed.length, ops.length)
        for (const sender of [0, 1, 2, 3]) {
          const immediate = executed.filter((e) => e.sender === sender && !e.scheduled).map((e) => e.seq)
          assert.deepStrictEqual(immediate, [...immediate].sort((a, b) => a - b))
        }
        for (const e of executed.filter((e) => e.scheduled)) assert.isAtLeast(e.at, e.due)
      }).pipe(withService()),
    { arbitrary: { runs: 40 } }
  )

  it.effect.prop(
    "no sequence of fencing-token changes lets a stale-token message run",
    [Schema.Array(FencedOp)],
    ([ops]) =>
      Effect.gen(function*() {
        const violations: Array<string> = []
        let ran = 0
        let main!: RpcEndpoint.MainThread<readonly [typeof FencingGateway], number>
        const check = (carried: number, what: string) =>
          Effect.flatMap(main.fencingToken, (current) =>
            Effect.sync(() => {
              ran++
              if (current._tag !== "Some" || current.value !== carried) {
                violations.push(`${what} carrying ${carried} ran under ${JSON.stringify(current)}`)
              }
            }))
        const endpoint = RpcEndpoint.makeFenced({
          gateways: [FencingGateway],
          token: Schema.Number,
          initialToken: 0,
          init: (m) =>
            Effect.sync(() => {
              main = m
              return {
                handlers: {
                  change: (next) => m.setFencingToken(next),
                  call: (carried) => check(carried, "call"),
                  tell: (carried) => check(carried, "tell"),
                  // Enqueues self-work stamped with the token current now, to run after later messages.
                  selfRun: () =>
                    Effect.flatMap(m.fencingToken, (now) =>
                      now._tag === "Some"
                        ? m.runAsync(check(now.value, "runAsync"))
                        : Effect.void)
                }
              }
            })
        })
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(endpoint)
        const clients = yield* Effect.forEach(
          [0, 1, 2, 3],
          (token) => svc.connectFenced(server.address, token, FencingGateway)
        )
        // The leader (the self gateway) changes tokens; the others call with whatever token they hold.
        const self = server.self(FencingGateway)
        const fibers = yield* Effect.forEach(ops, (op) => {
          const client = clients[op.token]!
          switch (op.kind) {
            case "change":
              return Effect.forkChild(Effect.ignore(self.change(op.token)))
            case "call":
              return Effect.forkChild(
                client.call(op.token).pipe(
                  Effect.catchTag("FencingTokenError", (error) =>
                    Effect.sync(() => {
                      if (error.reason !== "Mismatch" || error.received === error.expected) {
                        violations.push(`unexpected rejection ${error.message}`)
                      }
                    })),
                  Effect.ignore
                )
              )
            case "tell":
              return Effect.forkChild(Effect.ignore(client.tell(op.token)))
            case "selfRun":
              return Effect.forkChild(Effect.ignore(self.selfRun()))
          }
        })
        yield* Fiber.joinAll(fibers)
        yield* main.callAsync(Effect.void, "1 minute")
        assert.deepStrictEqual(violations, [])
        assert.isAtMost(ran, ops.length)
      }).pipe(withService()),
    { arbitrary: { runs: 60 } }
  )

  it.effect("a stale-token rejection is a typed FencingTokenError for asks", () =>
    Effect.gen(function*() {
      const svc = yield* service
      const endpoint = RpcEndpoint.makeFenced({
        gateways: [FencingGateway],
        token: Schema.Number,
        initialToken: 1,
        init: (m) =>
          Effect.succeed({
            handlers: {
              change: (next: number) => m.setFencingToken(next),
              call: () => Effect.void,
              tell: () => Effect.void,
              selfRun: () => Effect.void
            }
          })
      })
      const server = yield* RpcEndpoint.scoped(endpoint)
      const stale = yield* svc.connectFenced(server.address, 0, FencingGateway)
      const error = yield* Effect.flip(stale.call(0))
      assert.instanceOf(error, RpcError.FencingTokenError)
    }).pipe(withService()))
})
