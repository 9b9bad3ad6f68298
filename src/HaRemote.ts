/**
 * One process's leader election, served to other processes over RPC: `serve(driver)` runs an endpoint in front of a
 * `LeaderElectionDriver` (the embedded one, typically), and `layer(address)` gives other processes `HaServices` whose
 * driver campaigns and retrieves through that endpoint. For development clusters and demos that should fail over
 * between processes without running etcd.
 *
 * **Not fault tolerant**: the serving process is a single point of failure. While it is down, nobody can be granted
 * and every leader steps down at its lease deadline; when it comes back with a fresh embedded driver, terms start
 * over from 1 (tokens are still unique, but a follower using monotonic fencing will refuse the new, lower terms until
 * it restarts). Use etcd (`effect-actor-rpc/etcd`) for anything that must survive the loss of a machine.
 *
 * It adds the one thing the embedded driver lacks to be shared by processes that may die: a lease. A remote campaign
 * polls the server continuously (each poll is held up to `lease / 5` until there is news); a campaign whose process
 * has not polled for `lease` is withdrawn, so a SIGKILLed leader is replaced about `lease` later. The campaigning side
 * counts its lease deadline from the *send* time of its last answered poll (the server counts from the arrival of the
 * last poll, which was later): `sent + lease − margin` ends before the server can withdraw the campaign and grant
 * another, so HaServices' watchdog steps the leader down in time, as it does on etcd.
 *
 * One file of a little over 500 lines, deliberately: the protocol, its server and its client driver change together.
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import { LeaderElectionError } from "./HaError.js"
import * as HaServices from "./HaServices.js"
import { RpcService } from "./internal/serviceTag.js"
import { LeaderInformation } from "./LeaderInformation.js"
import type { DriverCampaign, DriverEvent, LeaderElectionDriver } from "./LeaderElectionDriver.js"
import * as LeaderToken from "./LeaderToken.js"
import * as RpcEndpoint from "./RpcEndpoint.js"
import type { EndpointIdInUseError, EndpointStartError, RpcServiceStoppedError } from "./RpcError.js"
import * as RpcGateway from "./RpcGateway.js"
import type { RpcServer } from "./RpcServer.js"

const Campaign = Schema.Struct({ campaign: Schema.String })
const Sessioned = Schema.Struct({ campaign: Schema.String, token: LeaderToken.LeaderToken })

const WireEvent = Schema.Union([
  Schema.TaggedStruct("Granted", { token: LeaderToken.LeaderToken }),
  Schema.TaggedStruct("Revoked", { token: LeaderToken.LeaderToken, reason: Schema.Literals(["Revoked", "Suspended"]) }),
  Schema.TaggedStruct("LeaderInformationChanged", { information: Schema.Option(LeaderInformation) }),
  Schema.TaggedStruct("Failed", { error: LeaderElectionError })
])
type WireEvent = typeof WireEvent.Type

const Numbered = Schema.Struct({ seq: Schema.Number, event: WireEvent })
type Numbered = typeof Numbered.Type

/**
 * The protocol between a served election and its remote campaigns and retrievals.
 *
 * @since 0.2.0
 */
export const HaRemoteGateway = RpcGateway.make("effect-actor-rpc/HaRemote", {
  /** Starts a campaign; the answer carries the lease the server enforces. */
  campaign: RpcGateway.ask({
    payload: Schema.Struct({ component: Schema.String }),
    success: Schema.Struct({ campaign: Schema.String, leaseMillis: Schema.Number }),
    failure: LeaderElectionError
  }),
  /** Keeps the campaign alive and returns its events after `acknowledged`, waiting up to the poll time for one. */
  poll: RpcGateway.ask({
    payload: Schema.Struct({ campaign: Schema.String, acknowledged: Schema.Number }),
    success: Schema.Array(Numbered),
    failure: LeaderElectionError
  }),
  publish: RpcGateway.ask({
    payload: Schema.Struct({ campaign: Schema.String, information: LeaderInformation }),
    success: Schema.Boolean,
    failure: LeaderElectionError
  }),
  unpublish: RpcGateway.ask({ payload: Sessioned, failure: LeaderElectionError }),
  relinquish: RpcGateway.ask({ payload: Sessioned }),
  withdraw: RpcGateway.ask({ payload: Campaign }),
  /** The published leader once its version differs from `version`, waiting up to `waitMillis` for a change. */
  leader: RpcGateway.ask({
    payload: Schema.Struct({ component: Schema.String, version: Schema.Number, waitMillis: Schema.Number }),
    success: Schema.Struct({ version: Schema.Number, leader: Schema.Option(LeaderInformation) })
  })
})

/**
 * Options of {@link serve}.
 *
 * @since 0.2.0
 */
export interface ServeOptions {
  /** The endpoint's id ("ha"). */
  readonly id?: string | undefined
  /**
   * How long a remote campaign may go without polling before it is withdrawn (5 s, etcd's default TTL here): a
   * crashed or cut-off leader is replaced about this long after its last poll.
   */
  readonly lease?: Duration.Input | undefined
}

interface Served {
  readonly id: string
  readonly component: string
  readonly scope: Scope.Closeable
  readonly campaign: DriverCampaign
  readonly events: Array<Numbered>
  nextSeq: number
  lastSeen: number
  /** Completed (and replaced) whenever an event arrives. */
  news: Deferred.Deferred<void>
}

interface Published {
  version: number
  leader: Option.Option<LeaderInformation>
  news: Deferred.Deferred<void>
}

/**
 * Serves `driver` to other processes at the returned server's address until the scope closes (which withdraws every
 * remote campaign).
 *
 * @since 0.2.0
 */
export const serve = (
  driver: LeaderElectionDriver,
  options?: ServeOptions | undefined
): Effect.Effect<
  RpcServer<readonly [typeof HaRemoteGateway]>,
  EndpointIdInUseError | RpcServiceStoppedError | EndpointStartError | LeaderElectionError,
  RpcService | Scope.Scope
> =>
  Effect.gen(function*() {
    const leaseMillis = Duration.toMillis(Duration.fromInputUnsafe(options?.lease ?? "5 seconds"))
    if (!(leaseMillis >= 100) || !Number.isFinite(leaseMillis)) {
      return yield* Effect.fail(
        new LeaderElectionError({
          component: "",
          engine: driver.engine,
          reason: "InvalidConfiguration",
          detail: `the lease of a served election must be at least 100 ms (got ${leaseMillis} ms)`
        })
      )
    }
    const holdMillis = Math.max(10, Math.floor(leaseMillis / 5))
    const log = Effect.annotateLogs({ module: "HaRemote", engine: driver.engine })
    const campaigns = new Map<string, Served>()
    const published = new Map<string, Published>()
    const lifetime = yield* Effect.scope

    const withdraw = (served: Served, why: string) =>
      Effect.suspend(() => {
        if (campaigns.get(served.id) !== served) return Effect.void
        campaigns.delete(served.id)
        return Effect.andThen(
          Effect.logInfo(`Withdrew the remote campaign ${served.id} for ${served.component}: ${why}`).pipe(log),
          Scope.close(served.scope, Exit.void)
        )
      })
    yield* Effect.addFinalizer(() =>
      Effect.forEach([...campaigns.values()], (served) => withdraw(served, "the server is shutting down"), {
        discard: true
      })
    )

    // Campaigns whose process stopped polling are withdrawn: the lease of the embedded driver.
    yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
      yield* Effect.sleep(Math.max(10, Math.floor(leaseMillis / 4)))
      const now = yield* Clock.currentTimeMillis
      for (const served of [...campaigns.values()]) {
        if (now - served.lastSeen > leaseMillis) yield* withdraw(served, `no poll for ${now - served.lastSeen} ms`)
      }
    })))

    const unknown = (campaign: string) =>
      new LeaderElectionError({
        component: "",
        engine: driver.engine,
        reason: "Closed",
        detail: `the remote campaign ${campaign} is unknown here (withdrawn, expired after ${leaseMillis} ms ` +
          `without a poll, or the server restarted)`
      })

    const servedOf = (campaign: string) =>
      Effect.suspend(() => {
        const served = campaigns.get(campaign)
        return served === undefined ? Effect.fail(unknown(campaign)) : Effect.succeed(served)
      })

    const waitForNews = (news: Deferred.Deferred<void>, waitMillis: number) =>
      Effect.timeoutOption(Deferred.await(news), Math.max(0, Math.min(waitMillis, holdMillis)))

    const startCampaign = (component: string) =>
      Effect.gen(function*() {
        const id = randomUUID()
        const scope = yield* Scope.fork(lifetime)
        const partial = {
          id,
          component,
          scope,
          events: [] as Array<Numbered>,
          nextSeq: 1,
          lastSeen: yield* Clock.currentTimeMillis,
          news: Deferred.makeUnsafe<void>()
        }
        const onEvent = (event: DriverEvent) => {
          partial.events.push({ seq: partial.nextSeq++, event: toWire(event) })
          const news = partial.news
          partial.news = Deferred.makeUnsafe<void>()
          Deferred.doneUnsafe(news, Effect.void)
        }
        const campaign = yield* driver.campaign(component, onEvent).pipe(
          Scope.provide(scope),
          Effect.onError(() => Scope.close(scope, Exit.void))
        )
        const served: Served = Object.assign(partial, { campaign })
        campaigns.set(id, served)
        yield* Effect.logInfo(`Remote campaign ${id} for ${component} started`).pipe(log)
        return { campaign: id, leaseMillis }
      })

    const poll = (campaign: string, acknowledged: number) =>
      Effect.gen(function*() {
        const served = yield* servedOf(campaign)
        served.lastSeen = yield* Clock.currentTimeMillis
        while (served.events.length > 0 && served.events[0]!.seq <= acknowledged) served.events.shift()
        if (served.events.length === 0) yield* waitForNews(served.news, holdMillis)
        return served.events.slice()
      })

    const publishedOf = (component: string) =>
      Effect.gen(function*() {
        const existing = published.get(component)
        if (existing !== undefined) return existing
        const entry: Published = { version: 0, leader: Option.none(), news: Deferred.makeUnsafe<void>() }
        published.set(component, entry)
        yield* driver.retrieve(component).pipe(
          Stream.runForEach((leader) =>
            Effect.sync(() => {
              entry.version += 1
              entry.leader = leader
              const news = entry.news
              entry.news = Deferred.makeUnsafe<void>()
              Deferred.doneUnsafe(news, Effect.void)
            })
          ),
          Effect.forkIn(lifetime)
        )
        return entry
      })

    const leader = (component: string, version: number, waitMillis: number) =>
      Effect.gen(function*() {
        const entry = yield* publishedOf(component)
        if (entry.version === version) yield* waitForNews(entry.news, waitMillis)
        return { version: entry.version, leader: entry.leader }
      })

    const endpoint = RpcEndpoint.make({
      id: options?.id ?? "ha",
      gateways: [HaRemoteGateway],
      init: () =>
        Effect.succeed({
          // Everything waits on the driver or on news: off the main thread.
          handlers: {
            campaign: ({ component }) => RpcEndpoint.later(startCampaign(component)),
            poll: ({ acknowledged, campaign }) => RpcEndpoint.later(poll(campaign, acknowledged)),
            publish: ({ campaign, information }) =>
              RpcEndpoint.later(Effect.flatMap(servedOf(campaign), (served) => served.campaign.publish(information))),
            unpublish: ({ campaign, token }) =>
              RpcEndpoint.later(Effect.flatMap(servedOf(campaign), (served) => served.campaign.unpublish(token))),
            relinquish: ({ campaign, token }) =>
              RpcEndpoint.later(Effect.suspend(() => {
                const served = campaigns.get(campaign)
                return served === undefined ? Effect.void : served.campaign.relinquish(token)
              })),
            withdraw: ({ campaign }) =>
              RpcEndpoint.later(Effect.suspend(() => {
                const served = campaigns.get(campaign)
                return served === undefined ? Effect.void : withdraw(served, "its process withdrew it")
              })),
            leader: ({ component, version, waitMillis }) => RpcEndpoint.later(leader(component, version, waitMillis))
          }
        })
    })
    return yield* RpcEndpoint.scoped(endpoint)
  })

const toWire = (event: DriverEvent): WireEvent => {
  switch (event._tag) {
    case "Granted":
      return { _tag: "Granted", token: event.token }
    case "Revoked":
      return { _tag: "Revoked", token: event.token, reason: event.reason }
    case "LeaderInformationChanged":
      return { _tag: "LeaderInformationChanged", information: event.information }
    case "Failed":
      return { _tag: "Failed", error: event.error }
  }
}

/**
 * Options of a driver that campaigns through a served election.
 *
 * @since 0.2.0
 */
export interface ClientOptions {
  /**
   * Subtracted from the lease (which the server announces) for the leader's deadline (a quarter of the lease): it
   * covers clock drift, a late timer and the time a revocation takes to reach the endpoint, as on etcd.
   */
  readonly margin?: Duration.Input | undefined
  /** How long each request may take on top of a poll's wait before the server counts as unreachable (1 s). */
  readonly requestTimeout?: Duration.Input | undefined
}

/**
 * A driver that campaigns and retrieves through the election served at `address` (see {@link serve}); its
 * campaigns are withdrawn when the scope closes.
 *
 * @since 0.2.0
 */
export const makeDriver = (
  address: string,
  options?: ClientOptions | undefined
): Effect.Effect<LeaderElectionDriver, never, RpcService | Scope.Scope> =>
  Effect.gen(function*() {
    const service = yield* RpcService
    const engine = `remote ${address}`
    const requestMillis = Duration.toMillis(Duration.fromInputUnsafe(options?.requestTimeout ?? "1 second"))
    const log = Effect.annotateLogs({ module: "HaRemote", engine })
    let client: RpcGateway.Client<typeof HaRemoteGateway> | undefined

    const unreachable = (component: string, what: string, error: { readonly message: string }) =>
      new LeaderElectionError({
        component,
        engine,
        reason: "Unreachable",
        detail: `${what} failed: ${error.message}`,
        cause: error
      })

    /** One request to the server; anything that is not the server's own answer is "Unreachable". */
    const call = <A>(
      component: string,
      what: string,
      request: (client: RpcGateway.Client<typeof HaRemoteGateway>) => Effect.Effect<A, unknown>
    ): Effect.Effect<A, LeaderElectionError> =>
      Effect.gen(function*() {
        if (client === undefined) {
          client = yield* service.connect(address, HaRemoteGateway, { timeout: requestMillis }).pipe(
            Effect.mapError((error) => unreachable(component, what, error))
          )
        }
        return yield* request(client).pipe(
          Effect.mapError((error) =>
            error instanceof LeaderElectionError
              ? error
              : unreachable(component, what, error as { readonly message: string })
          )
        )
      })

    const campaign = (component: string, onEvent: (event: DriverEvent) => void) =>
      Effect.gen(function*() {
        const current: {
          id: string | undefined
          granted: LeaderToken.LeaderToken | undefined
        } = { id: undefined, granted: undefined }
        const clock = yield* Effect.clockWith(Effect.succeed)

        /** One remote campaign, polled until the server cannot be reached or forgets it. */
        const run = (id: string, leaseMillis: number, startedAt: number) =>
          Effect.gen(function*() {
            const marginMillis = options?.margin === undefined
              ? Math.floor(leaseMillis / 4)
              : Duration.toMillis(Duration.fromInputUnsafe(options.margin))
            const holdMillis = Math.max(10, Math.floor(leaseMillis / 5))
            // The server counts the lease from the arrival of the campaign's request, then of each poll.
            let lastAnswered = startedAt
            const deadline = () => lastAnswered + leaseMillis - marginMillis
            let acknowledged = 0
            while (true) {
              const sentAt = clock.currentTimeMillisUnsafe()
              const events = yield* call(component, "polling the campaign", (c) =>
                c.poll({ campaign: id, acknowledged }, { timeout: holdMillis + requestMillis }))
              lastAnswered = sentAt
              for (const { event, seq } of events) {
                acknowledged = seq
                switch (event._tag) {
                  case "Granted":
                    current.granted = event.token
                    onEvent({ _tag: "Granted", token: event.token, leaseDeadline: deadline })
                    break
                  case "Revoked":
                    if (current.granted !== undefined && LeaderToken.Equivalence(current.granted, event.token)) {
                      current.granted = undefined
                      onEvent({ _tag: "Revoked", token: event.token, reason: event.reason })
                    }
                    break
                  case "LeaderInformationChanged":
                    onEvent({ _tag: "LeaderInformationChanged", information: event.information })
                    break
                  case "Failed":
                    onEvent({ _tag: "Failed", error: event.error })
                    break
                }
              }
            }
          })

        const withdraw = Effect.suspend(() => {
          const id = current.id
          current.id = undefined
          return id === undefined
            ? Effect.void
            : call(component, "withdrawing the campaign", (c) => c.withdraw({ campaign: id })).pipe(
              Effect.timeoutOption(requestMillis),
              Effect.ignore
            )
        })
        yield* Effect.addFinalizer(() => withdraw)

        yield* Effect.forkScoped(Effect.gen(function*() {
          let failures = 0
          while (true) {
            const sentAt = clock.currentTimeMillisUnsafe()
            const started = yield* Effect.result(
              call(component, "starting a campaign", (c) => c.campaign({ component }, { timeout: requestMillis }))
            )
            if (started._tag === "Success") {
              failures = 0
              current.id = started.success.campaign
              const ended = yield* Effect.flip(run(started.success.campaign, started.success.leaseMillis, sentAt))
              const granted = current.granted
              current.granted = undefined
              if (granted !== undefined) onEvent({ _tag: "Revoked", token: granted, reason: "Suspended" })
              yield* withdraw
              if (failures === 0) onEvent({ _tag: "Failed", error: ended })
              yield* Effect.logWarning(ended.message).pipe(log)
            } else {
              if (failures === 0) onEvent({ _tag: "Failed", error: started.failure })
              yield* Effect.logWarning(started.failure.message).pipe(log)
            }
            yield* Effect.sleep(Math.min(100 * 2 ** failures, 2000))
            failures += 1
          }
        }))

        const idOf = (token: LeaderToken.LeaderToken) =>
          current.id !== undefined && current.granted !== undefined &&
            LeaderToken.Equivalence(current.granted, token)
            ? current.id
            : undefined

        const driverCampaign: DriverCampaign = {
          publish: (information) =>
            Effect.suspend(() => {
              const id = idOf(information.token)
              return id === undefined
                ? Effect.succeed(false)
                : call(component, "publishing the leader", (c) => c.publish({ campaign: id, information }))
            }),
          unpublish: (token) =>
            Effect.suspend(() => {
              const id = current.id
              return id === undefined
                ? Effect.void
                : call(component, "deleting the published leader", (c) => c.unpublish({ campaign: id, token }))
            }),
          relinquish: (token) =>
            Effect.suspend(() => {
              const id = idOf(token)
              if (id === undefined) return Effect.void
              current.granted = undefined
              return call(component, "relinquishing", (c) => c.relinquish({ campaign: id, token })).pipe(Effect.ignore)
            })
        }
        return driverCampaign
      })

    const retrieve = (component: string): Stream.Stream<Option.Option<LeaderInformation>> =>
      Stream.callback<Option.Option<LeaderInformation>>((queue) =>
        Effect.forkScoped(Effect.gen(function*() {
          let version = -1
          let failures = 0
          while (true) {
            const answer = yield* Effect.result(
              call(component, "reading the leader", (c) =>
                c.leader({ component, version, waitMillis: requestMillis }, { timeout: 2 * requestMillis }))
            )
            if (answer._tag === "Success") {
              failures = 0
              if (answer.success.version !== version) {
                version = answer.success.version
                Queue.offerUnsafe(queue, answer.success.leader)
              }
              continue
            }
            // Contact lost: no leader can be vouched for until the server answers again.
            version = -1
            Queue.offerUnsafe(queue, Option.none())
            yield* Effect.sleep(Math.min(50 * 2 ** failures, 1000))
            failures += 1
          }
        }))
      )

    const driver: LeaderElectionDriver = { engine, campaign, retrieve }
    return driver
  })

/**
 * `HaServices` over the election served at `address` (see {@link serve}).
 *
 * @since 0.2.0
 */
export const layer = (
  address: string,
  options?: ClientOptions | undefined
): Layer.Layer<HaServices.HaServices, never, RpcService> => HaServices.layer(makeDriver(address, options))
