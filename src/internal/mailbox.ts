/**
 * An endpoint's mailbox and main thread.
 *
 * Messages are processed strictly one at a time, in offer order, by a fiber that exists only while the mailbox
 * has work: `offer` starts it when the mailbox is idle, and it ends when the mailbox is empty. An idle endpoint
 * therefore holds no fiber and no list, only this object. The fiber yields to others after `throughput` messages
 * so that one busy endpoint cannot starve the rest.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as MutableList from "effect/MutableList"
import type * as Scope from "effect/Scope"

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
  /** The main-thread fiber, while there is one. */
  readonly current: () => Fiber.Fiber<unknown, unknown> | undefined
}

/** The state of one turn of the main thread: messages left before it yields, and whether it has lingered. */
interface Turn<R> {
  budget: number
  lingered: boolean
  next: () => Effect.Effect<void, never, R>
}

class MailboxImpl<A, R> implements Mailbox<A> {
  // The list effect/Queue keeps its messages in (chunked arrays that compact their spent head), allocated while the
  // mailbox has work and dropped when it is idle. A Queue itself would cost 880 bytes per idle endpoint: see
  // docs/ARCHITECTURE.md, "The mailbox".
  private queue: MutableList.MutableList<A> | undefined = undefined
  private closed = false
  private fiber: Fiber.Fiber<void> | undefined = undefined
  private waiters: Array<() => void> | undefined = undefined

  // The processor is read for its context, throughput and scope when a turn starts rather than copied here: every
  // endpoint has a mailbox, and an idle one is counted in bytes.
  constructor(private readonly processor: Processor<A, R>) {}

  private hasWork(): boolean {
    return this.queue !== undefined && this.queue.length > 0
  }

  /**
   * One turn of the main thread. It starts with a yield so that `offer` never runs a handler on the sender's own
   * stack, and it lingers for one more yield once the queue is empty: a caller resumed by the last reply usually
   * sends its next message within that yield, which then runs on this fiber instead of a new one.
   */
  private drain(): Effect.Effect<void, never, R> {
    const turn: Turn<R> = { budget: Math.max(1, this.processor.throughput), lingered: false, next: undefined! }
    turn.next = this.continuation(turn)
    return Effect.flatMap(Effect.yieldNow, turn.next)
  }

  // One continuation per turn, made by a method: a closure bound to a name would be wrapped by tsx's keepNames in
  // an Object.defineProperty each time.
  private continuation(turn: Turn<R>): () => Effect.Effect<void, never, R> {
    return () => this.step(turn)
  }

  private step(turn: Turn<R>): Effect.Effect<void, never, R> {
    if (this.closed) return this.finishTurn()
    if (!this.hasWork()) {
      if (turn.lingered) return this.finishTurn()
      turn.lingered = true
      return Effect.flatMap(Effect.yieldNow, turn.next)
    }
    turn.lingered = false
    if (turn.budget-- <= 0) {
      turn.budget = Math.max(1, this.processor.throughput)
      return Effect.flatMap(Effect.yieldNow, turn.next)
    }
    return Effect.flatMap(this.processor.process(this.take()), turn.next)
  }

  private take(): A {
    return MutableList.take(this.queue!) as A
  }

  private finishTurn(): Effect.Effect<void> {
    this.fiber = undefined
    if (!this.hasWork()) this.queue = undefined
    const waiters = this.waiters
    if (waiters !== undefined) {
      this.waiters = undefined
      for (const resume of waiters) resume()
    }
    return Effect.void
  }

  offer(message: A): boolean {
    if (this.closed) return false
    MutableList.append(this.queue ??= MutableList.make(), message)
    if (this.fiber === undefined) this.startTurn()
    return true
  }

  private startTurn(): void {
    // The drain yields before its first message, so the fiber is registered before anything runs on it. Its owner
    // is the service's scope, which interrupts a turn still running when the service is gone.
    const fiber = Fiber.runIn(Effect.runForkWith(this.processor.context)(this.drain()), this.processor.fiberScope)
    this.fiber = fiber
    fiber.addObserver(() => {
      // Only an abnormal end (a defect or interruption escaping `process`) leaves the turn unfinished.
      if (this.fiber === fiber) {
        this.finishTurn()
        // After its owner's scope has closed, a new turn would be interrupted at once, and again: none is started.
        if (!this.closed && this.hasWork() && this.processor.fiberScope.state._tag !== "Closed") this.startTurn()
      }
    })
  }

  close(): Array<A> {
    this.closed = true
    const rest = this.queue === undefined ? [] : MutableList.takeAll(this.queue)
    this.queue = undefined
    return rest
  }

  isMainThread(fiber: Fiber.Fiber<unknown, unknown> | undefined): boolean {
    return fiber !== undefined && fiber === this.fiber
  }

  get awaitIdle(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.fiber === undefined) return Effect.void
      return Effect.callback<void>((resume) => {
        ;(this.waiters ??= []).push(() => resume(Effect.void))
      })
    })
  }

  size(): number {
    return this.queue === undefined ? 0 : this.queue.length
  }

  isClosed(): boolean {
    return this.closed
  }

  isActive(): boolean {
    return this.fiber !== undefined
  }

  current(): Fiber.Fiber<unknown, unknown> | undefined {
    return this.fiber
  }
}

/**
 * What processes a mailbox's messages, with the services in `context`. The mailbox keeps the object itself, so an
 * owner that implements it (the endpoint runtime does) costs no closure per mailbox.
 */
export interface Processor<A, R> {
  readonly process: (message: A) => Effect.Effect<void, never, R>
  readonly context: Context.Context<R>
  readonly throughput: number
  /** The scope the turns' fibers are forked into. */
  readonly fiberScope: Scope.Scope
}

/** Creates a mailbox whose messages `processor.process` handles one at a time. */
export const make = <A, R>(processor: Processor<A, R>): Mailbox<A> => new MailboxImpl(processor)
