/**
 * The etcd driver itself: campaign sessions on a lease, keepalives that move the lease deadline, ownership checks
 * before a grant, guarded publication, and retrieval by watch and probe. See ../../etcd.ts for the recipe it follows.
 * The only module that loads etcd3 (and cockatiel); etcd.ts imports it dynamically.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { ExponentialBackoff, noop } from "cockatiel"
import { Etcd3, GRPCDeadlineExceededError, type IKeyValue, type IOptions, isRecoverableError, type Watcher } from "etcd3"
import { randomUUID } from "node:crypto"
import type { EtcdOptions } from "../../etcd.js"
import { LeaderElectionError } from "../../HaError.js"
import type { LeaderInformation } from "../../LeaderInformation.js"
import type { DriverCampaign, DriverEvent, LeaderElectionDriver } from "../../LeaderElectionDriver.js"
import * as LeaderToken from "../../LeaderToken.js"
import { decodeLeader, encodeLeader, prefixEnd, type Settings, toBuffer } from "./settings.js"

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

/** The etcd3 client's options: our own loops retry, so the client's fault handling is off. */
export const clientOptions = (options: EtcdOptions, settings: Settings): IOptions => ({
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
})

/** Makes the etcd driver over resolved `settings`: one etcd3 client for every campaign and retrieval. */
export const make = (
  options: EtcdOptions,
  settings: Settings
): Effect.Effect<LeaderElectionDriver, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clockWith(Effect.succeed)
    const now = () => clock.currentTimeMillisUnsafe()

    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new Etcd3(clientOptions(options, settings))),
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

