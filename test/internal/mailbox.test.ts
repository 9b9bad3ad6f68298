/**
 * The mailbox: strictly serial, in order, no fiber while idle, and robust to a message whose processing dies.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Schema, Scope } from "effect"
import * as Mailbox from "../../src/internal/mailbox.js"

/** The scope the turns of these mailboxes are forked into; never closed but in the test that closes its own. */
const fiberScope = Scope.makeUnsafe()

const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const recorder = (options?: { readonly throughput?: number; readonly yields?: (n: number) => number }) => {
  const seen: Array<number> = []
  let active = 0
  let overlaps = 0
  const mailbox = Mailbox.make<number, never>({
    context: Context.empty(),
    fiberScope,
    throughput: options?.throughput ?? 64,
    process: (n) =>
      Effect.gen(function*() {
        if (active++ > 0) overlaps++
        for (let i = 0; i < (options?.yields?.(n) ?? 0); i++) yield* Effect.yieldNow
        seen.push(n)
        active--
      })
  })
  return { mailbox, seen, overlaps: () => overlaps }
}

describe("mailbox", () => {
  it.effect("processes messages one at a time, in offer order", () =>
    Effect.gen(function*() {
      const { mailbox, seen, overlaps } = recorder({ yields: (n) => n % 3 })
      for (let i = 0; i < 100; i++) assert.isTrue(mailbox.offer(i))
      yield* settle
      yield* mailbox.awaitIdle
      assert.deepStrictEqual(seen, Array.from({ length: 100 }, (_, i) => i))
      assert.strictEqual(overlaps(), 0)
    }))

  it.effect("holds no fiber while idle and starts one for the next message", () =>
    Effect.gen(function*() {
      const { mailbox, seen } = recorder()
      assert.isFalse(mailbox.isActive())
      mailbox.offer(1)
      assert.isTrue(mailbox.isActive())
      yield* mailbox.awaitIdle
      assert.isFalse(mailbox.isActive())
      mailbox.offer(2)
      yield* mailbox.awaitIdle
      assert.isFalse(mailbox.isActive())
      assert.deepStrictEqual(seen, [1, 2])
    }))

  it.effect("never processes on the sender's stack", () =>
    Effect.gen(function*() {
      const { mailbox, seen } = recorder()
      mailbox.offer(1)
      assert.deepStrictEqual(seen, [])
      yield* mailbox.awaitIdle
      assert.deepStrictEqual(seen, [1])
    }))

  it.effect("close returns what was queued and refuses further offers", () =>
    Effect.gen(function*() {
      const { mailbox, seen } = recorder()
      mailbox.offer(1)
      mailbox.offer(2)
      assert.strictEqual(mailbox.size(), 2)
      assert.deepStrictEqual(mailbox.close(), [1, 2])
      assert.isFalse(mailbox.offer(3))
      assert.isTrue(mailbox.isClosed())
      yield* settle
      assert.deepStrictEqual(seen, [])
    }))

  it.effect("a low throughput lets two busy mailboxes take turns", () =>
    Effect.gen(function*() {
      const order: Array<string> = []
      const make = (name: string) =>
        Mailbox.make<number, never>({
          context: Context.empty(),
          fiberScope,
          throughput: 1,
          process: (n) => Effect.sync(() => void order.push(`${name}${n}`))
        })
      const a = make("a")
      const b = make("b")
      for (let i = 0; i < 3; i++) {
        a.offer(i)
        b.offer(i)
      }
      yield* settle
      yield* a.awaitIdle
      yield* b.awaitIdle
      assert.notDeepEqual(order, ["a0", "a1", "a2", "b0", "b1", "b2"])
      assert.deepStrictEqual(order.filter((x) => x.startsWith("a")), ["a0", "a1", "a2"])
    }))

  it.effect("a message whose processing dies does not stall the mailbox", () =>
    Effect.gen(function*() {
      const seen: Array<number> = []
      const mailbox = Mailbox.make<number, never>({
        context: Context.empty(),
        fiberScope,
        throughput: 64,
        process: (n) => n === 2 ? Effect.die("broken") : Effect.sync(() => void seen.push(n))
      })
      for (const n of [1, 2, 3]) mailbox.offer(n)
      yield* settle
      yield* mailbox.awaitIdle
      assert.deepStrictEqual(seen, [1, 3])
      assert.isFalse(mailbox.isActive())
    }))

  it.effect("the main-thread check is true only on the processing fiber", () =>
    Effect.gen(function*() {
      const checks: Array<boolean> = []
      const mailbox: Mailbox.Mailbox<number> = Mailbox.make<number, never>({
        context: Context.empty(),
        fiberScope,
        throughput: 64,
        process: () => Effect.withFiber((fiber) => Effect.sync(() => void checks.push(mailbox.isMainThread(fiber))))
      })
      mailbox.offer(1)
      yield* mailbox.awaitIdle
      yield* Effect.withFiber((fiber) => Effect.sync(() => void checks.push(mailbox.isMainThread(fiber))))
      assert.deepStrictEqual(checks, [true, false])
    }))

  it.effect.prop(
    "any offer sequence is processed exactly once, in order, without overlap",
    [Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 5 })))],
    ([costs]) =>
      Effect.gen(function*() {
        const { mailbox, seen, overlaps } = recorder({ throughput: 3, yields: (n) => costs[n] ?? 0 })
        // Offer in two bursts with processing in between, so turns end and restart.
        const half = Math.floor(costs.length / 2)
        for (let i = 0; i < half; i++) mailbox.offer(i)
        yield* Effect.yieldNow
        for (let i = half; i < costs.length; i++) mailbox.offer(i)
        yield* settle
        yield* mailbox.awaitIdle
        assert.deepStrictEqual(seen, costs.map((_, i) => i))
        assert.strictEqual(overlaps(), 0)
        assert.isFalse(mailbox.isActive())
      })
  )

  it.effect("a turn belongs to its owner's scope: closing the scope interrupts a turn still running", () =>
    Effect.gen(function*() {
      const owner = Scope.makeUnsafe()
      const started = yield* Deferred.make<void>()
      let interrupted = false
      const mailbox = Mailbox.make<number, never>({
        context: Context.empty(),
        fiberScope: owner,
        throughput: 64,
        process: () =>
          Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
            Effect.onInterrupt(() => Effect.sync(() => void (interrupted = true)))
          )
      })
      mailbox.offer(1)
      mailbox.offer(2)
      yield* Deferred.await(started)
      assert.isTrue(mailbox.isActive())
      yield* Scope.close(owner, Exit.void)
      yield* settle
      assert.isTrue(interrupted, "the turn was interrupted")
      assert.isFalse(mailbox.isActive(), "and the mailbox knows it has no turn; it starts none for the message left")
    }))
})
