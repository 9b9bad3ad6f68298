/**
 * Effect's own floors for the two in-process workloads, without this library: what a local ask and a local tell
 * cannot go below while a handler is an Effect run on a fiber of its own (docs/PERFORMANCE.md, "What bounds").
 *
 *   npx tsx bench/floors.ts
 *
 * - ask floor: a caller suspends in `Effect.callback`, a second, long-lived fiber resumes it. No mailbox, no
 *   Invocation, no deadline, no metrics, no handler Effect.
 * - tell floor: the sender runs one `Effect.suspend` per message that queues it; a fiber started on demand, as our
 *   mailbox's is, runs one `flatMap` and one `Effect.sync` (the handler) per message, 64 per turn.
 */
import { Effect, Fiber } from "effect"

const N = 1_000_000

const askFloor = Effect.gen(function*() {
  const inbox: Array<() => void> = []
  let wake: (() => void) | undefined
  const server = yield* Effect.forkChild(Effect.forever(Effect.flatMap(
    Effect.callback<void>((resume) => {
      if (inbox.length > 0) resume(Effect.void)
      else {
        wake = () => {
          wake = undefined
          resume(Effect.void)
        }
      }
    }),
    () =>
      Effect.sync(() => {
        while (inbox.length > 0) inbox.shift()!()
      })
  )))
  const started = performance.now()
  for (let i = 0; i < N; i++) {
    yield* Effect.callback<number>((resume) => {
      inbox.push(() => resume(Effect.succeed(i)))
      wake?.()
    })
  }
  const rate = N / ((performance.now() - started) / 1000)
  yield* Fiber.interrupt(server)
  return rate
})

const tellFloor = Effect.gen(function*() {
  const queue: Array<number> = []
  let head = 0
  let total = 0
  let running = false
  const step = (budget: number): Effect.Effect<void> => {
    if (head >= queue.length) {
      running = false
      return Effect.void
    }
    if (budget === 0) return Effect.flatMap(Effect.yieldNow, () => step(64))
    const message = queue[head++]!
    return Effect.flatMap(Effect.sync(() => void (total += message)), () => step(budget - 1))
  }
  const send = (message: number) =>
    Effect.suspend(() => {
      queue.push(message)
      if (!running) {
        running = true
        Effect.runFork(Effect.flatMap(Effect.yieldNow, () => step(64)))
      }
      return Effect.void
    })
  const started = performance.now()
  for (let i = 0; i < N; i++) yield* send(1)
  while (total < N) yield* Effect.yieldNow
  return N / ((performance.now() - started) / 1000)
})

const program = Effect.gen(function*() {
  for (let round = 0; round < 4; round++) {
    const ask = yield* askFloor
    const tell = yield* tellFloor
    // The first round warms the JIT up.
    if (round > 0) {
      console.log(`ask floor ${Math.round(ask).toLocaleString("en")}/s   tell floor ${Math.round(tell).toLocaleString("en")}/s`)
    }
  }
})

Effect.runPromise(program)
