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
 * @since 0.1.0
 */
import { ExponentialBackoff, noop } from "cockatiel"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Etcd3, GRPCDeadlineExceededError, type IKeyValue, type IOptions, isRecoverableError, type Watcher } from "etcd3"
import { randomUUID } from "node:crypto"
import { LeaderElectionError } from "./HaError.js"
import * as HaServices from "./HaServices.js"
import { LeaderInformation } from "./LeaderInformation.js"
import type { DriverCampaign, DriverEvent, LeaderElectionDriver } from "./LeaderElectionDriver.js"
import * as LeaderToken from "./LeaderToken.js"

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
export const defaults = {
  ttl: Duration.seconds(5),
  margin: Duration.seconds(1),
  prefix: "effect-actor-rpc/"
} as const

interface Settings {
  readonly engine: string
  readonly ttlSeconds: number
  readonly marginMillis: number
  readonly keepAliveMillis: number
  readonly requestMillis: number
  readonly prefix: string
}

/** Decodes the value of a leader key (JSON of `LeaderInformation`); anything else reads as no leader. */
const LeaderInformationJson = Schema.fromJsonString(LeaderInformation)
const decodeLeader = Schema.decodeUnknownOption(LeaderInformationJson)
const encodeLeader = Schema.encodeSync(LeaderInformationJson)

/** The end of a key range that covers every key starting with `prefix`. */
const prefixEnd = (prefix: Buffer): Buffer => {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1
      return end.subarray(0, i + 1)
    }
  }
  return Buffer.from([0])
}

const toBuffer = (value: string | Uint8Array): Buffer =>
  typeof value === "string" ? Buffer.from(value) : Buffer.from(value.buffer, value.byteOffset, value.byteLength)

const resolve = (options: EtcdOptions): Effect.Effect<Settings, LeaderElectionError> =>
  Effect.gen(function*() {
    const engine = `etcd ${options.endpoints.join(",")}`
    const invalid = (detail: string) =>
      new LeaderElectionError({ component: "", engine, reason: "InvalidConfiguration", detail })
    if (options.endpoints.length === 0) return yield* Effect.fail(invalid("no endpoints are configured"))
    const ttl = Duration.fromInputUnsafe(options.ttl ?? defaults.ttl)
    const margin = Duration.fromInputUnsafe(options.margin ?? defaults.margin)
    const ttlMillis = Duration.toMillis(ttl)
    if (!(ttlMillis >= 1000) || !Number.isFinite(ttlMillis)) {
      return yield* Effect.fail(invalid(`the TTL must be at least 1 second (got ${Duration.format(ttl)})`))
    }
    const ttlSeconds = Math.ceil(ttlMillis / 1000)
    const keepAliveMillis = Duration.toMillis(Duration.fromInputUnsafe(options.keepAliveInterval ?? ttlMillis / 5))
    const requestMillis = Duration.toMillis(Duration.fromInputUnsafe(options.requestTimeout ?? ttlMillis / 2))
    const marginMillis = Duration.toMillis(margin)
    if (!(marginMillis >= 0) || marginMillis + keepAliveMillis >= ttlSeconds * 1000) {
      return yield* Effect.fail(
        invalid(
          `the margin (${Duration.format(margin)}) plus the keepalive interval (${keepAliveMillis} ms) must stay ` +
            `below the TTL (${ttlSeconds} s)`
        )
      )
    }
    if (!(keepAliveMillis > 0) || !(requestMillis > 0)) {
      return yield* Effect.fail(invalid("the keepalive interval and the request timeout must be positive"))
    }
    return {
      engine,
      ttlSeconds,
      marginMillis,
      keepAliveMillis,
      requestMillis,
      prefix: options.prefix ?? defaults.prefix
    }
  })

type SessionEnd = "Revoked" | "Suspended" | "Relinquished"

interface Session {
  readonly id: string
  readonly lease: string
  readonly key: Buffer
  /** The key's create revision, once written. */
  revision: number
  /** Set when granted. */
  token: LeaderToken.LeaderToken | undefined
  /** The lease deadline, local Clock milliseconds. */
  deadline: number
  readonly end: Deferred.Deferred<SessionEnd>
}

/**
 * Makes the etcd driver: one etcd client for every campaign and retrieval, closed with the scope.
 *
 * @since 0.1.0
 */
export const makeDriver = (options: EtcdOptions): Effect.Effect<LeaderElectionDriver, LeaderElectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* resolve(options)
    const clock = yield* Effect.clockWith(Effect.succeed)
    const now = () => clock.currentTimeMillisUnsafe()

    const clientOptions: IOptions = {
      hosts: [...options.endpoints],
      dialTimeout: settings.requestMillis,
      // Our own loops retry, with deadlines that matter for safety: no hidden retries or circuit breakers under them,
      // and watches reconnect within a second rather than etcd3's default of up to 30 s.
      faultHandling: {
        host: () => noop,
        global: noop,
        watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }).next()
      },
      defaultCallOptions: (context) => context.isStream ? {} : { deadline: Date.now() + settings.requestMillis },
      ...(options.tls === undefined ? {} : {
        credentials: {
          rootCertificate: toBuffer(options.tls.ca),
          ...(options.tls.key === undefined ? {} : { privateKey: toBuffer(options.tls.key) }),
          ...(options.tls.cert === undefined ? {} : { certChain: toBuffer(options.tls.cert) })
        }
      }),
      ...(options.auth === undefined ? {} : { auth: { ...options.auth } })
    }
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new Etcd3(clientOptions)),
      (client) => Effect.sync(() => client.close())
    )

    const keysOf = (component: string) => {
      const base = `${settings.prefix}${encodeURIComponent(component)}/`
      const candidates = Buffer.from(`${base}candidates/`)
      return {
        base: Buffer.from(base),
        candidates,
        candidatesEnd: prefixEnd(candidates),
        leader: Buffer.from(`${base}leader`)
      }
    }

    /** Runs one request to etcd; every failure is a typed error (timeouts and network errors are "Unreachable"). */
    const call = <A>(component: string, what: string, request: () => Promise<A>) =>
      Effect.tryPromise({
        try: request,
        catch: (cause) => {
          const error = cause instanceof Error ? cause : new Error(String(cause))
          const unreachable = error instanceof GRPCDeadlineExceededError || isRecoverableError(error)
          return new LeaderElectionError({
            component,
            engine: settings.engine,
            reason: unreachable ? "Unreachable" : "Rejected",
            detail: `${what} failed: ${error.message}`,
            cause: error
          })
        }
      }).pipe(
        Effect.timeoutOrElse({
          duration: settings.requestMillis + 500,
          orElse: () =>
            Effect.fail(
              new LeaderElectionError({
                component,
                engine: settings.engine,
                reason: "Unreachable",
                detail: `${what} got no answer within ${settings.requestMillis} ms`
              })
            )
        })
      )

    /** A watcher of every key under `key` (a prefix) or of `key` alone, from `revision`; cancelled with the scope. */
    const watch = (component: string, key: Buffer, prefix: boolean, revision: number) =>
      Effect.acquireRelease(
        Effect.suspend(() => {
          const builder = client.watch()
          const pending = (prefix ? builder.prefix(key) : builder.key(key)).startRevision(String(revision))
            .withPreviousKV().create()
          return call(component, "watching", () => pending).pipe(
            // A watcher that is created after we gave up waiting must not outlive us.
            Effect.onError(() => Effect.sync(() => void pending.then((watcher) => watcher.cancel(), () => undefined)))
          )
        }),
        (watcher) => Effect.promise(() => watcher.cancel().catch(() => undefined)).pipe(Effect.timeoutOption("1 second"))
      )

    /** Keeps `session`'s lease alive until the scope closes; moves its deadline forward; ends it when lost. */
    const keepAlive = (component: string, session: Session) =>
      Effect.gen(function*() {
        const end = (reason: SessionEnd) => Deferred.doneUnsafe(session.end, Effect.succeed(reason))
        const stream = yield* call(component, "opening the keepalive stream", () => client.leaseClient.leaseKeepAlive())
        let stopped = false
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            stopped = true
            stream.cancel()
          })
        )
        const sent: Array<number> = []
        stream.on("data", (response) => {
          const sentAt = sent.shift()
          const ttl = Number(response.TTL)
          if (!(ttl > 0)) return end("Revoked")
          if (sentAt !== undefined) session.deadline = Math.max(session.deadline, sentAt + ttl * 1000 - settings.marginMillis)
        })
        stream.on("error", () => {
          if (!stopped) end("Suspended")
        })
        stream.on("end", () => {
          if (!stopped) end("Suspended")
        })
        yield* Effect.forkScoped(Effect.gen(function*() {
          while (true) {
            yield* Effect.sleep(settings.keepAliveMillis)
            const at = now()
            // Unanswered for two intervals: the connection is gone, even if TCP has not said so.
            if (sent.length > 0 && at - sent[0]! > 2 * settings.keepAliveMillis) return end("Suspended")
            sent.push(at)
            stream.write({ ID: session.lease })
          }
        }))
      })

    /**
     * One session: lease, key, wait to lead, lead until it ends. Returns how it ended; fails when etcd could not be
     * used (the caller retries with backoff). Releasing its scope revokes the lease (best effort).
     */
    const runSession = (
      component: string,
      keys: ReturnType<typeof keysOf>,
      current: { session: Session | undefined },
      onEvent: (event: DriverEvent) => void
    ) =>
      Effect.gen(function*() {
        const id = randomUUID()
        const askedAt = now()
        const granted = yield* call(component, "granting a lease", () =>
          client.leaseClient.leaseGrant({ TTL: settings.ttlSeconds }))
        if (granted.error !== undefined && granted.error !== "") {
          return yield* Effect.fail(
            new LeaderElectionError({
              component,
              engine: settings.engine,
              reason: "Rejected",
              detail: `granting a lease failed: ${granted.error}`
            })
          )
        }
        const lease = granted.ID
        yield* Effect.addFinalizer(() =>
          call(component, "revoking a lease", () => client.leaseClient.leaseRevoke({ ID: lease })).pipe(Effect.ignore)
        )
        const session: Session = {
          id,
          lease,
          key: Buffer.concat([keys.candidates, Buffer.from(id)]),
          revision: 0,
          token: undefined,
          deadline: askedAt + Number(granted.TTL) * 1000 - settings.marginMillis,
          end: yield* Deferred.make<SessionEnd>()
        }
        current.session = session
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            if (current.session === session) current.session = undefined
          })
        )
        yield* keepAlive(component, session)

        const put = yield* call(component, "writing the candidate key", () =>
          client.kv.put({ key: session.key, value: Buffer.from(id), lease }))
        session.revision = Number(put.header.revision)

        const rechecks = yield* Queue.sliding<void>(1)
        const watcher: Watcher = yield* watch(component, keys.base, true, session.revision + 1)
        const isLeaderKey = (kv: IKeyValue) => kv.key.equals(keys.leader)
        watcher.on("delete", (kv) => {
          if (kv.key.equals(session.key)) Deferred.doneUnsafe(session.end, Effect.succeed("Revoked"))
          else if (isLeaderKey(kv)) {
            if (session.token !== undefined) onEvent({ _tag: "LeaderInformationChanged", information: Option.none() })
          } else Queue.offerUnsafe(rechecks, undefined)
        })
        watcher.on("put", (kv) => {
          if (isLeaderKey(kv) && session.token !== undefined) {
            onEvent({ _tag: "LeaderInformationChanged", information: decodeLeader(kv.value.toString()) })
          }
        })

        // Wait to be the live candidate with the lowest create revision.
        while (true) {
          const lowest = yield* call(component, "reading the candidates", () =>
            client.kv.range({
              key: keys.candidates,
              range_end: keys.candidatesEnd,
              sort_order: "Ascend",
              sort_target: "Create",
              limit: 1
            }))
          const first = lowest.kvs[0]
          if (first !== undefined && first.key.equals(session.key)) break
          if (first === undefined || Number(first.create_revision) > session.revision) return "Revoked" as const
          const woke = yield* Effect.raceFirst(
            Effect.as(Queue.take(rechecks), "recheck" as const),
            Deferred.await(session.end)
          )
          if (woke !== "recheck") return woke
        }

        // Ownership: the key must still exist with the revision it was created at (a key that vanished meanwhile,
        // say in an outage, must not be granted).
        const owned = yield* call(component, "checking ownership", () =>
          client.kv.txn({
            compare: [{ key: session.key, target: "Create", result: "Equal", create_revision: session.revision }]
          }))
        if (!owned.succeeded) return "Revoked" as const
        if (Deferred.isDoneUnsafe(session.end) || now() >= session.deadline) return "Suspended" as const

        const token = LeaderToken.make(session.revision, id)
        session.token = token
        onEvent({ _tag: "Granted", token, leaseDeadline: () => session.deadline })
        const ended = yield* Deferred.await(session.end)
        if (ended !== "Relinquished") onEvent({ _tag: "Revoked", token, reason: ended })
        return ended
      }).pipe(Effect.scoped)

    const campaign = (component: string, onEvent: (event: DriverEvent) => void) =>
      Effect.gen(function*() {
        const keys = keysOf(component)
        const current: { session: Session | undefined } = { session: undefined }
        const log = Effect.annotateLogs({ module: "etcd", component, engine: settings.engine })

        yield* Effect.forkScoped(
          Effect.gen(function*() {
            let failures = 0
            while (true) {
              const outcome = yield* Effect.result(runSession(component, keys, current, onEvent))
              if (outcome._tag === "Success") {
                failures = 0
                yield* Effect.logDebug(`Campaign session ended: ${outcome.success}; campaigning again`).pipe(log)
                continue
              }
              // The first failure of a streak goes to the contender; every one is logged. Retried with backoff.
              if (failures === 0) onEvent({ _tag: "Failed", error: outcome.failure })
              yield* Effect.logWarning(outcome.failure.message).pipe(log)
              const delay = Math.min(100 * 2 ** failures, settings.keepAliveMillis * 2, 2000)
              failures += 1
              yield* Effect.sleep(delay)
            }
          })
        )

        const sessionOf = (token: LeaderToken.LeaderToken) => {
          const session = current.session
          return session?.token !== undefined && LeaderToken.Equivalence(session.token, token) ? session : undefined
        }

        const driverCampaign: DriverCampaign = {
          publish: (information) =>
            Effect.suspend(() => {
              const session = sessionOf(information.token)
              if (session === undefined || Deferred.isDoneUnsafe(session.end)) return Effect.succeed(false)
              return call(component, "publishing the leader", () =>
                client.kv.txn({
                  compare: [{ key: session.key, target: "Create", result: "Equal", create_revision: session.revision }],
                  success: [{
                    request_put: { key: keys.leader, value: Buffer.from(encodeLeader(information)), lease: session.lease }
                  }]
                })).pipe(Effect.map((response) => response.succeeded))
            }),
          unpublish: (token) =>
            Effect.suspend(() => {
              const session = sessionOf(token)
              // A session that is over had its lease revoked, which deleted what it published.
              if (session === undefined) return Effect.void
              return call(component, "deleting the published leader", () =>
                client.kv.txn({
                  compare: [{ key: keys.leader, target: "Lease", result: "Equal", lease: session.lease }],
                  success: [{ request_delete_range: { key: keys.leader } }]
                })).pipe(Effect.asVoid)
            }),
          relinquish: (token) =>
            Effect.sync(() => {
              const session = sessionOf(token)
              if (session !== undefined) Deferred.doneUnsafe(session.end, Effect.succeed("Relinquished"))
            })
        }
        return driverCampaign
      })

    const retrieve = (component: string): Stream.Stream<Option.Option<LeaderInformation>> =>
      Stream.callback<Option.Option<LeaderInformation>>((queue) =>
        Effect.gen(function*() {
          const keys = keysOf(component)
          let lastRevision = 0
          const emit = (value: Option.Option<LeaderInformation>, revision: number | undefined) => {
            if (revision !== undefined) {
              if (revision < lastRevision) return
              lastRevision = revision
            }
            Queue.offerUnsafe(queue, value)
          }
          const read = call(component, "reading the leader", () => client.kv.range({ key: keys.leader })).pipe(
            Effect.map((response) => {
              const kv = response.kvs[0]
              emit(kv === undefined ? Option.none() : decodeLeader(kv.value.toString()), Number(response.header.revision))
              return Number(response.header.revision)
            })
          )
          /** Reads, then follows the key until contact is lost (then fails). */
          const follow = Effect.gen(function*() {
            const revision = yield* read
            const lost = yield* Deferred.make<void, LeaderElectionError>()
            const watcher = yield* watch(component, keys.leader, false, revision + 1)
            watcher.on("put", (kv) => emit(decodeLeader(kv.value.toString()), Number(kv.mod_revision)))
            watcher.on("delete", (kv) => emit(Option.none(), Number(kv.mod_revision)))
            const disconnected = () => Deferred.doneUnsafe(lost, Effect.void)
            watcher.on("disconnected", disconnected)
            watcher.on("error", disconnected)
            // The watch alone may not notice a silent network: probe with a read each interval.
            yield* Effect.forkScoped(
              Effect.forever(Effect.andThen(Effect.sleep(settings.keepAliveMillis), read)).pipe(
                Effect.catch(() => Deferred.succeed(lost, undefined))
              )
            )
            yield* Deferred.await(lost)
          }).pipe(Effect.scoped)

          yield* Effect.forkScoped(Effect.gen(function*() {
            let failures = 0
            while (true) {
              const started = now()
              yield* Effect.exit(follow)
              // Contact lost: no leader can be vouched for until etcd answers again.
              Queue.offerUnsafe(queue, Option.none())
              if (now() - started > 5 * settings.keepAliveMillis) failures = 0
              yield* Effect.sleep(Math.min(50 * 2 ** failures, settings.keepAliveMillis))
              failures += 1
            }
          }))
        })
      )

    const driver: LeaderElectionDriver = { engine: settings.engine, campaign, retrieve }
    return driver
  })

/**
 * The HA services on etcd; the client connects lazily and closes with the Layer. Fails at once only on a
 * configuration that cannot work.
 *
 * @since 0.1.0
 */
export const layer = (options: EtcdOptions): Layer.Layer<HaServices.HaServices, LeaderElectionError> =>
  HaServices.layer(makeDriver(options))
