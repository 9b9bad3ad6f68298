/**
 * Ask timeouts without a timer or a race per call.
 *
 * Racing every ask against a sleep forks two fibers and arms a timer per call, which cost more than the rest of a
 * local ask together. Instead each service keeps its pending deadlines in one list per timeout duration (appended
 * in time order, so every list is sorted, as in Node's own timer lists) and runs at most one timer fiber, asleep
 * until the earliest deadline. A call that completes unlinks its entry in O(1). The timer fiber only needs waking
 * early when a deadline comes before the one it sleeps until, which is rare: most asks share one timeout, so
 * each new deadline is the latest. The fiber uses the service's Clock, so TestClock drives it in tests.
 *
 * With Node's own clock (not a TestClock), deadlines are kept on `performance.now()` (plus a fixed offset, so they
 * read as epoch milliseconds), which is also what the per-call metrics read: one reading of the clock serves an
 * ask's deadline, its latency and its mailbox wait. A reading costs 50 to 80 ns on the VMs measured here, and a
 * local ask used to take eight of them.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"

/**
 * A pending deadline; `remove` it when the call completes first. A caller may implement it on an object of its own
 * (`insert`), so that one object is both the call and its place in the list.
 */
export interface Entry {
  deadline: number
  fire(): void
  /** Called instead of `fire` when the deadlines close first (the service has stopped). */
  stop(): void
  list: List | undefined
  prev: Entry | undefined
  next: Entry | undefined
}

interface List {
  readonly duration: number
  head: Entry | undefined
  tail: Entry | undefined
}

/** The deadlines of one service. */
export class Deadlines {
  private readonly lists = new Map<number, List>()
  private readonly clock: Clock.Clock
  private fiber: Fiber.Fiber<void> | undefined = undefined
  /** The deadline the timer fiber sleeps until; Infinity when there is no timer fiber. */
  private armedAt = Infinity
  private closed = false
  /** Set while the timer fiber fires entries: it recomputes the earliest deadline itself afterwards. */
  private ticking = false
  /** How many entries are pending. */
  size = 0

  /** Is the service's clock Node's own? Then `now` reads `performance.now()`. */
  readonly live: boolean
  private readonly offset: number

  /** The timer fiber runs with `context` (its Clock), in `scope`: the service's, which ends it at the latest. */
  constructor(private readonly context: Context.Context<never>, private readonly scope: Scope.Scope) {
    this.clock = Context.get(context, Clock.Clock)
    this.live = this.clock instanceof (Context.get(Context.empty(), Clock.Clock).constructor as new() => Clock.Clock)
    this.offset = Date.now() - performance.now()
  }

  /** The time deadlines are measured in, in milliseconds: the service's clock (monotonic when it is Node's). */
  readonly now = (): number => this.live ? performance.now() + this.offset : this.clock.currentTimeMillisUnsafe()

  /**
   * The time the metrics measure durations in: the same reading as `now` with Node's clock; real time under a
   * TestClock, whose virtual time would make every duration zero.
   */
  readonly metricNow = (): number => this.live ? performance.now() + this.offset : performance.now()

  /** The time by the service's `Clock`, as Effect code reads it (what a fencing token's `validUntil` is in). */
  readonly clockNow = (): number => this.clock.currentTimeMillisUnsafe()

  /** Is the timer fiber alive? */
  get timerActive(): boolean {
    return this.fiber !== undefined
  }

  /**
   * Calls `fire` (on the timer fiber) once `millis` have passed since `now` (default: now), unless the entry is
   * removed first; calls `stop` if the deadlines close before that.
   */
  add(millis: number, fire: () => void, stop: () => void, now: number = this.now()): Entry {
    const entry: Entry = { deadline: 0, fire, stop, list: undefined, prev: undefined, next: undefined }
    this.insert(entry, millis, now)
    return entry
  }

  /** `add` for an entry the caller made (not in any list): its `fire` or `stop` is called as `add`'s would be. */
  insert(entry: Entry, millis: number, now: number): void {
    const deadline = entry.deadline = now + millis
    if (this.closed) {
      entry.stop()
      return
    }
    let list = this.lists.get(millis)
    if (list === undefined) this.lists.set(millis, list = { duration: millis, head: undefined, tail: undefined })
    entry.list = list
    entry.prev = list.tail
    entry.next = undefined
    if (list.tail === undefined) list.head = entry
    else list.tail.next = entry
    list.tail = entry
    this.size++
    if (deadline < this.armedAt && !this.closed && !this.ticking) this.arm()
  }

  /** Forgets an entry; harmless when it has fired or was removed already. */
  remove(entry: Entry): void {
    const list = entry.list
    if (list === undefined) return
    entry.list = undefined
    this.size--
    if (entry.prev === undefined) list.head = entry.next
    else entry.prev.next = entry.next
    if (entry.next === undefined) list.tail = entry.prev
    else entry.next.prev = entry.prev
    entry.prev = entry.next = undefined
  }

  /**
   * Stops the timer and calls `stop` on every pending entry: nothing would time them out any more, so their calls
   * must end now (asks to endpoints of other services, whose replies the stopped service would still await).
   */
  close(): void {
    this.closed = true
    const pending: Array<Entry> = []
    for (const list of this.lists.values()) {
      for (let entry = list.head; entry !== undefined; entry = entry.next) pending.push(entry)
    }
    this.lists.clear()
    this.size = 0
    for (const entry of pending) {
      entry.list = entry.prev = entry.next = undefined
      entry.stop()
    }
    const fiber = this.fiber
    this.fiber = undefined
    this.armedAt = Infinity
    fiber?.interruptUnsafe()
  }

  /** (Re)starts the timer fiber for the earliest deadline. */
  private arm(): void {
    this.fiber?.interruptUnsafe()
    const fiber = Fiber.runIn(Effect.runForkWith(this.context)(this.tick()), this.scope)
    if (fiber.pollUnsafe() === undefined) this.fiber = fiber
  }

  private tick(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const now = this.now()
      let earliest = Infinity
      this.ticking = true
      try {
        for (const list of this.lists.values()) {
          let entry = list.head
          while (entry !== undefined && entry.deadline <= now) {
            this.remove(entry)
            entry.fire()
            entry = list.head
          }
          if (entry === undefined) this.lists.delete(list.duration)
          else if (entry.deadline < earliest) earliest = entry.deadline
        }
      } finally {
        this.ticking = false
      }
      this.armedAt = earliest
      if (earliest === Infinity) {
        this.fiber = undefined
        return Effect.void
      }
      return Effect.flatMap(this.clock.sleep(Duration.millis(earliest - now)), () => this.tick())
    })
  }
}
