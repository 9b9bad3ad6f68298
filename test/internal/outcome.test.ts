/**
 * The lazily made outcome behind an endpoint's startup and termination: a Deferred only for someone who waits
 * before the outcome is known; the first outcome stands; a waiter that resumes sees the outcome stored.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as Outcome from "../../src/internal/outcome.js"

class Holder {
  outcome: Outcome.Outcome<string> = undefined
  get wait() {
    return Effect.suspend(() => Outcome.wait(this.outcome, (deferred) => this.outcome = deferred))
  }
  settle(exit: Exit.Exit<void, string>) {
    Outcome.settle(this.outcome, exit, (known) => this.outcome = known)
  }
}

describe("Outcome", () => {
  it.effect("known before anyone waits: no Deferred is made, waiting returns the outcome", () =>
    Effect.gen(function*() {
      const holder = new Holder()
      holder.settle(Exit.fail("no"))
      assert.isTrue(Exit.isExit(holder.outcome))
      assert.isTrue(Outcome.isKnown(holder.outcome))
      assert.deepStrictEqual(yield* Effect.flip(holder.wait), "no")
    }))

  it.effect("waiters before the outcome share one Deferred and are released by it; they see it stored", () =>
    Effect.gen(function*() {
      const holder = new Holder()
      assert.isFalse(Outcome.isKnown(holder.outcome))
      const seen: Array<boolean> = []
      const waiter = () => Effect.forkChild(Effect.tap(holder.wait, () => Effect.sync(() => seen.push(Outcome.isKnown(holder.outcome)))))
      const first = yield* waiter()
      const second = yield* waiter()
      yield* Effect.yieldNow
      assert.isTrue(Deferred.isDeferred(holder.outcome))
      holder.settle(Exit.void)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      assert.deepStrictEqual(seen, [true, true])
    }))

  it.effect("the first outcome stands", () =>
    Effect.gen(function*() {
      const holder = new Holder()
      holder.settle(Exit.void)
      holder.settle(Exit.fail("later"))
      yield* holder.wait
      assert.strictEqual(holder.outcome, Exit.void)
    }))
})
