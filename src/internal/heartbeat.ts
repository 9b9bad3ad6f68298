/**
 * The failure detector of a connection (after `makePinger` in effect/src/rpc/RpcClient.ts): every interval it
 * sends the peer a heartbeat request, and it gives up on the peer once nothing has answered for the pause, or when
 * no hello has come within the connect timeout. Only answers count (`lastHeard`): the peer's own traffic still
 * arrives in a one-way partition.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/** What the detector watches and what it does. */
export interface Watched {
  readonly state: "opening" | "open" | "closed"
  /** When the peer last answered something this side sent, by the clock in milliseconds. */
  readonly lastHeard: number
  /** Sends a heartbeat request. */
  readonly ping: () => void
  /** No hello came within the connect timeout. */
  readonly noHello: () => void
  /** Nothing answered for the pause or longer. */
  readonly silent: (silentMillis: number) => Effect.Effect<void>
}

/** The detector's timing (RpcConfig's heartbeatInterval, heartbeatPause and connectTimeout). */
export interface Timing {
  readonly heartbeatInterval: Duration.Duration
  readonly heartbeatPause: Duration.Duration
  readonly connectTimeout: Duration.Duration
}

/** Runs until the connection closes or the detector closes it. */
export const detect = (watched: Watched, timing: Timing): Effect.Effect<void> => {
  const pause = Duration.toMillis(timing.heartbeatPause)
  const connectTimeout = Duration.toMillis(timing.connectTimeout)
  return Clock.clockWith((clock) =>
    Effect.gen(function*() {
      const started = clock.currentTimeMillisUnsafe()
      while (watched.state !== "closed") {
        yield* Effect.sleep(timing.heartbeatInterval)
        const now = clock.currentTimeMillisUnsafe()
        if (watched.state === "opening") {
          if (now - started >= connectTimeout) watched.noHello()
          continue
        }
        if (watched.state !== "open") return
        const silent = now - watched.lastHeard
        if (silent >= pause) return yield* watched.silent(silent)
        watched.ping()
      }
    })
  )
}
