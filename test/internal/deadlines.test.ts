/**
 * Ask deadlines: one timer fiber per service, driven by the service's Clock (TestClock here).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { Deadlines } from "../../src/internal/deadlines.js"

const make = Effect.gen(function*() {
  return new Deadlines(yield* Effect.context<never>(), yield* Effect.scope)
})

const none = () => {}

describe("deadlines", () => {
  it.effect("fires each entry once its time has passed, in deadline order, and never early", () =>
    Effect.gen(function*() {
      const deadlines = yield* make
      const fired: Array<string> = []
      deadlines.add(300, () => fired.push("300"), none)
      deadlines.add(100, () => fired.push("100"), none)
      deadlines.add(100, () => fired.push("100 again"), none)
      yield* TestClock.adjust("99 millis")
      assert.deepStrictEqual(fired, [])
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(fired, ["100", "100 again"])
      yield* TestClock.adjust("199 millis")
      assert.deepStrictEqual(fired, ["100", "100 again"])
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(fired, ["100", "100 again", "300"])
    }))

  it.effect("a removed entry never fires, wherever it sits in its list", () =>
    Effect.gen(function*() {
      const deadlines = yield* make
      const fired: Array<number> = []
      const entries = [1, 2, 3, 4].map((n) => deadlines.add(50, () => fired.push(n), none))
      deadlines.remove(entries[0]!)
      deadlines.remove(entries[2]!)
      deadlines.remove(entries[2]!)
      yield* TestClock.adjust("50 millis")
      assert.deepStrictEqual(fired, [2, 4])
    }))

  it.effect("an entry the caller made (insert) is fired, removed or stopped like one add made", () =>
    Effect.gen(function*() {
      const deadlines = yield* make
      const events: Array<string> = []
      // An object that is its own entry, as an ask in flight is: `fire` and `stop` are its methods.
      class Call {
        deadline = 0
        list = undefined
        prev = undefined
        next = undefined
        constructor(readonly name: string) {}
        fire() {
          events.push(`${this.name} fired`)
        }
        stop() {
          events.push(`${this.name} stopped`)
        }
      }
      const [a, b, c] = [new Call("a"), new Call("b"), new Call("c")]
      const now = deadlines.now()
      deadlines.insert(a, 50, now)
      deadlines.insert(b, 50, now)
      deadlines.insert(c, 80, now)
      assert.strictEqual(a.deadline, now + 50)
      deadlines.remove(b)
      yield* TestClock.adjust("50 millis")
      assert.deepStrictEqual(events, ["a fired"])
      deadlines.close()
      assert.deepStrictEqual(events, ["a fired", "c stopped"])
      deadlines.insert(new Call("late"), 10, deadlines.now())
      assert.deepStrictEqual(events, ["a fired", "c stopped", "late stopped"], "closed: stopped at once")
    }))

  it.effect("a deadline earlier than the one the timer sleeps until wakes it early", () =>
    Effect.gen(function*() {
      const deadlines = yield* make
      const fired: Array<string> = []
      deadlines.add(10_000, () => fired.push("long"), none)
      yield* TestClock.adjust("1 millis")
      deadlines.add(20, () => fired.push("short"), none)
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual(fired, ["short"])
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(fired, ["short", "long"])
    }))

  it.effect("keeps working after it has gone idle, and close stops everything", () =>
    Effect.gen(function*() {
      const deadlines = yield* make
      const fired: Array<number> = []
      deadlines.add(10, () => fired.push(1), none)
      yield* TestClock.adjust("10 millis")
      deadlines.add(10, () => fired.push(2), none)
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(fired, [1, 2])
      const stopped: Array<number> = []
      deadlines.add(10, () => fired.push(3), () => stopped.push(3))
      deadlines.close()
      assert.deepStrictEqual(stopped, [3], "a pending entry is stopped when the deadlines close")
      deadlines.add(5, () => fired.push(4), () => stopped.push(4))
      assert.deepStrictEqual(stopped, [3, 4], "an entry added after close is stopped at once")
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(fired, [1, 2])
      assert.strictEqual(deadlines.size, 0)
    }))
})
