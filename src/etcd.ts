/**
 * Leader election and retrieval on etcd (entry point `effect-actor-rpc/etcd`; needs the optional peer dependency
 * `etcd3`, which only this module loads).
 *
 * The standard recipe, on etcd's primitives (leases, transactions, watches), not on etcd3's `Election` helper, which
 * was measured unsafe here (it declares a lease lost only after 2×TTL, so a partitioned leader and its successor
 * overlapped for about one TTL; its observer never reports a disconnection; after an outage a failed campaign fired
 * `elected` for a key that no longer existed). Per campaign session:
 *
 * 1. grant a lease (TTL `ttl`) and note the local time just before asking: the lease cannot end before that time plus
 *    the TTL, so the session's lease deadline is that time + TTL − `margin`; each acknowledged keepalive moves it to
 *    (time the keepalive was sent) + TTL − margin;
 * 2. put `<prefix><component>/candidates/<session>` (value: the session id) with the lease; its create revision is the
 *    session's term;
 * 3. the leader is the live candidate with the lowest create revision: while another one is lower, wait for a delete
 *    under the candidates prefix and look again;
 * 4. before granting, check ownership with a transaction comparing the key's create revision (a key that vanished in
 *    an outage is never granted), and that the deadline is still ahead;
 * 5. a confirmation publishes `<prefix><component>/leader` = `{ address, token }` with the leader's lease, in a
 *    transaction guarded by the same comparison, so it vanishes with the leader's session and a deposed leader cannot
 *    overwrite its successor;
 * 6. keepalives that fail (the stream errors, or goes unanswered for two intervals) end the session as "Suspended",
 *    a keepalive answered with TTL 0 or the key's deletion as "Revoked"; the campaign then starts over with a fresh
 *    lease and key, whose create revision (the next term) is higher.
 *
 * On top of this, HaServices revokes a leadership at its lease deadline by the local clock, whatever this driver has
 * noticed. Retrieval reads the leader key and watches it, probing etcd every keepalive interval: `None` while the key is
 * absent and while etcd cannot be reached.
 *
 * This module holds the public options and Layers; the driver is in internal/etcd/ (`settings.ts`: options resolved
 * and checked, the leader key's encoding; `driver.ts`: the etcd3 client, sessions, keepalives, retrieval), split to
 * keep each file under the project's 500 lines. `driver.ts` is imported on first use, so that this entry point loads
 * without etcd3 and a missing etcd3 is a `LeaderElectionError` that says what to install.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { LeaderElectionError } from "./HaError.js"
import * as HaServices from "./HaServices.js"
import * as Settings from "./internal/etcd/settings.js"
import type { LeaderElectionDriver } from "./LeaderElectionDriver.js"

/**
 * TLS material for etcd's client port: PEM text or bytes.
 *
 * @since 0.1.0
 */
export interface EtcdTls {
  /** The CA certificates that etcd's certificate must chain to. */
  readonly ca: string | Uint8Array
  /** This client's certificate (chain), for etcd's `--client-cert-auth`. */
  readonly cert?: string | Uint8Array | undefined
  /** This client's private key. */
  readonly key?: string | Uint8Array | undefined
}

/**
 * Options of the etcd driver. Only `endpoints` is required.
 *
 * @since 0.1.0
 */
export interface EtcdOptions {
  /** etcd's client endpoints: "127.0.0.1:2379", "http://etcd-1:2379", "https://etcd-1:2379" (with `tls`). */
  readonly endpoints: ReadonlyArray<string>
  /**
   * The lease TTL of a campaign session (5 s; etcd counts whole seconds and may raise it to its own minimum, 2 s at
   * its default settings). A crashed leader is replaced about one TTL later; a live one keeps its leadership through
   * stalls (a GC pause, a blocked event loop, an etcd leader election, 1 s at etcd's defaults) shorter than TTL −
   * margin. 5 s keeps both an etcd election and a stall of a few seconds from costing the leadership.
   */
  readonly ttl?: Duration.Input | undefined
  /**
   * Subtracted from the lease's end to get the leader's lease deadline (1 s). It covers what the local clock cannot
   * see: its rate drifting from etcd's, a late timer, and the time a revocation takes to reach the endpoint. Must be
   * below the TTL minus one keepalive interval.
   */
  readonly margin?: Duration.Input | undefined
  /** How often a session's lease is kept alive (TTL / 5, so several keepalives fit in one deadline). */
  readonly keepAliveInterval?: Duration.Input | undefined
  /** How long one request to etcd may take before it counts as failed (TTL / 2). */
  readonly requestTimeout?: Duration.Input | undefined
  /** The prefix of every key this driver writes ("effect-actor-rpc/"). */
  readonly prefix?: string | undefined
  /** TLS for etcd's client port (endpoints then start with https://). */
  readonly tls?: EtcdTls | undefined
  /** etcd user and password, for a cluster with authentication enabled. */
  readonly auth?: { readonly username: string; readonly password: string } | undefined
}

/**
 * The defaults: TTL 5 s, margin 1 s, keepalives every TTL / 5, requests time out after TTL / 2, keys under
 * "effect-actor-rpc/".
 *
 * @since 0.1.0
 */
export const defaults: {
  readonly ttl: Duration.Duration
  readonly margin: Duration.Duration
  readonly prefix: string
} = Settings.defaults

/**
 * Makes the etcd driver: one etcd client for every campaign and retrieval, closed with the scope.
 *
 * @since 0.1.0
 */
export const makeDriver = (
  options: EtcdOptions
): Effect.Effect<LeaderElectionDriver, LeaderElectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* Settings.resolve(options)
    const Driver = yield* loadDriver(settings.engine)
    return yield* Driver.make(options, settings)
  })

/**
 * The driver, loaded on first use: etcd3 (and its gRPC client) are optional peer dependencies, so a missing one is a
 * typed error that says what to install rather than a failed import of this entry point.
 */
const loadDriver = (engine: string) =>
  Effect.tryPromise({
    try: () => import("./internal/etcd/driver.js"),
    catch: (cause) => {
      const missing = /Cannot find (?:package|module) '(etcd3|cockatiel)'/.exec(String(cause))
      return new LeaderElectionError({
        component: "",
        engine,
        reason: "InvalidConfiguration",
        detail: missing === null
          ? `the etcd driver could not be loaded: ${String(cause)}`
          : `the etcd driver needs the ${missing[1]} package, which is not installed: run \`npm install etcd3\` ` +
            `(it brings cockatiel; with a package manager that does not hoist, install cockatiel too)`,
        cause
      })
    }
  })

/**
 * The HA services on etcd; the client connects lazily and closes with the Layer. Fails at once only on a
 * configuration that cannot work.
 *
 * @since 0.1.0
 */
export const layer = (options: EtcdOptions): Layer.Layer<HaServices.HaServices, LeaderElectionError> =>
  HaServices.layer(makeDriver(options))
