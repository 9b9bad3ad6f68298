/**
 * An endpoint's mailbox and main thread.
 *
 * Messages are processed strictly one at a time, in offer order, by a fiber that exists only while the mailbox
 * has work: `offer` starts it when the mailbox is idle, and it ends when the mailbox is empty. An idle endpoint
 * therefore holds no fiber, only this object and its (empty) array. The fiber yields to others after
 * `throughput` messages so that one busy endpoint cannot starve the rest.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"

/** The narrow interface the endpoint runtime uses. */
export interface Mailbox<A> {
  /** Enqueues a message; `false` when the mailbox is closed (the message was not taken). */
  readonly offer: (message: A) => boolean
  /** Closes the mailbox and returns the messages that were queued but not yet taken, in order. */
  readonly close: () => Array<A>
  /** Is the given fiber the one processing messages right now? */
  readonly isMainThread: (fiber: Fiber.Fiber<unknown, unknown> | undefined) => boolean
  /** Completes when no message is being processed (after `close`, when the last one has finished). */
  readonly awaitIdle: Effect.Effect<void>
  /** The number of queued messages not yet taken. */
  readonly size: () => number
  readonly isClosed: () => boolean
  /** Is a main-thread fiber alive right now? (Never while the mailbox is idle.) */
  readonly isActive: () => boolean
}

/** Compact the backing array once this many slots at its head are spent. */
const COMPACT_AT = 1024

class MailboxImpl<A, R> implements Mailbox<A> {
  private queue: Array<A | undefined> = []
  private head = 0
  private closed = false
  private fiber: Fiber.Fiber<void> | undefined = undefined
  private readonly run: (effect: Effect.Effect<void, never, R>) => Fiber.Fiber<void>
  private readonly drain: Effect.Effect<void, never, R>

  constructor(
    readonly process: (message: A) => Effect.Effect<void, never, R>,
    readonly context: Context.Context<R>,
    readonly throughput: number
  ) {
    this.run = (effect) => Effect.runForkWith(context)(effect)
    const self = this
    // Starts with a yield so that `offer` never runs a handler on the sender's own stack.
    this.drain = Effect.flatMap(Effect.yieldNow, () =>
      Effect.suspend(function loop(): Effect.Effect<void, never, R> {
        let budget = self.throughput
        const next = (): Effect.Effect<void, never, R> => {
          if (self.closed || self.head >= self.queue.length) {
            self.finishTurn()
            return Effect.void
          }
          if (budget-- <= 0) return Effect.flatMap(Effect.yieldNow, loop)
          const message = self.take()
          return Effect.flatMap(self.process(message), next)
        }
        return next()
      }))
  }

  private take(): A {
    const message = this.queue[this.head] as A
    this.queue[this.head++] = undefined
    if (this.head >= COMPACT_AT && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    return message
  }

  private finishTurn(): void {
    this.fiber = undefined
    if (this.head >= this.queue.length) {
      this.queue.length = 0
      this.head = 0
    }
    const waiters = this.waiters
    if (waiters !== undefined) {
      this.waiters = undefined
      for (const resume of waiters) resume()
    }
  }

  private waiters: Array<() => void> | undefined = undefined

  offer(message: A): boolean {
    if (this.closed) return false
    this.queue.push(message)
    if (this.fiber === undefined) this.startTurn()
    return true
  }

  private startTurn(): void {
    // The drain yields before its first message, so the fiber is registered before anything runs on it.
    const fiber = this.run(this.drain)
    this.fiber = fiber
    fiber.addObserver(() => {
      // Only an abnormal end (a defect or interruption escaping `process`) leaves the turn unfinished.
      if (this.fiber === fiber) {
        this.finishTurn()
        if (!this.closed && this.head < this.queue.length) this.startTurn()
      }
    })
  }

  close(): Array<A> {
    this.closed = true
    const rest = this.queue.slice(this.head) as Array<A>
    this.queue = []
    this.head = 0
    return rest
  }

  isMainThread(fiber: Fiber.Fiber<unknown, unknown> | undefined): boolean {
    return fiber !== undefined && fiber === this.fiber
  }

  readonly awaitIdle: Effect.Effect<void> = Effect.suspend(() => {
    if (this.fiber === undefined) return Effect.void
    return Effect.callback<void>((resume) => {
      ;(this.waiters ??= []).push(() => resume(Effect.void))
    })
  })

  size(): number {
    return this.queue.length - this.head
  }

  isClosed(): boolean {
    return this.closed
  }

  isActive(): boolean {
    return this.fiber !== undefined
  }
}

/** Creates a mailbox whose messages are processed by `process`, with the services in `context`. */
export const make = <A, R>(options: {
  readonly process: (message: A) => Effect.Effect<void, never, R>
  readonly context: Context.Context<R>
  readonly throughput: number
}): Mailbox<A> => new MailboxImpl(options.process, options.context, Math.max(1, options.throughput))
