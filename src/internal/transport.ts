/**
 * A socket transport for an RpcService: it listens on a port of the configured range, dials peers on demand and
 * keeps at most one live connection per peer service (an inbound connection serves calls back to the peer that
 * opened it). TCP and TLS differ only in how sockets are opened and whom they trust.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import type * as SocketServer from "effect/socket/SocketServer"
import { randomUUID } from "node:crypto"
import * as Net from "node:net"
import * as RpcAddress from "../RpcAddress.js"
import type { RpcConfig } from "../RpcConfig.js"
import { RpcBindError } from "../RpcError.js"
import { Connection, type ConnectionOwner, type OpenFailure } from "./connection.js"
import type { Verdicts } from "./exchange.js"
import { describe } from "./format.js"
import type { Recipient } from "./invocation.js"
import type { Instruments } from "./metrics.js"
import * as Ports from "./ports.js"
import type { ConnectionSnapshot } from "./serviceTag.js"
import { codeOf, isTlsFailure, TlsContext, type TlsSettings } from "./tls.js"

/** Where to listen and what to advertise. */
export interface ListenSettings {
  readonly host: string
  readonly port: string
  readonly externalHost: string | undefined
  readonly externalPort: number | undefined
}

/** What the transport needs from the service that owns it. */
export interface TransportOwner {
  readonly serviceName: string
  readonly config: RpcConfig
  readonly lookup: (endpointId: string) => Recipient | undefined
  readonly instruments: Instruments
  readonly tracing: boolean
  /** The service's deadline time (what an ask's deadline is kept in). */
  readonly now: () => number
  /** The services dialled connections run with (the application's logger, clock, tracer). */
  readonly context: Context.Context<never>
  /** The service's verdicts on pairs of gateway versions (./exchange.ts). */
  readonly verdicts: Verdicts
}

const ignore = () => {}

/** A dial that did not connect within `RpcConfig.connectTimeout`. */
class DialTimeout {
  readonly _tag = "DialTimeout"
}

/** The transport of one service. */
export class Transport {
  readonly protocol: "rpc" | "rpcs"
  readonly incarnation = randomUUID()
  /** This service's advertised `host:port`, known once bound. */
  authority = ""
  private closing = false
  private readonly connections = new Map<string, Connection>()
  private readonly live = new Map<Connection, Deferred.Deferred<void>>()
  private readonly connectionOwner: ConnectionOwner
  /** The TLS side (certificates, handshakes, reloads) of an `rpcs://` transport. */
  private readonly tls: TlsContext | undefined

  constructor(
    readonly owner: TransportOwner,
    tls: TlsSettings | undefined,
    private readonly scope: Scope.Closeable
  ) {
    this.protocol = tls === undefined ? "rpc" : "rpcs"
    this.tls = tls === undefined ? undefined : new TlsContext(tls, owner.config.connectTimeout)
    const transport = this
    this.connectionOwner = {
      serviceName: owner.serviceName,
      config: owner.config,
      incarnation: this.incarnation,
      get authority() {
        return transport.authority
      },
      protocol: this.protocol,
      lookup: owner.lookup,
      register: (connection, peer) => {
        const existing = this.connections.get(peer)
        if (existing === undefined || existing.state === "closed") this.connections.set(peer, connection)
      },
      unregister: (connection) => {
        for (const [peer, registered] of this.connections) {
          if (registered === connection) this.connections.delete(peer)
        }
      },
      instruments: owner.instruments,
      tracing: owner.tracing,
      now: owner.now,
      verdicts: owner.verdicts
    }
  }

  snapshot(): Array<ConnectionSnapshot> {
    return [...this.live.keys()].map((connection) => connection.snapshot())
  }

  /** How many connections are open or opening. */
  get connectionCount(): number {
    return this.live.size
  }

  /** The live connection to the service at `authority`, dialling one if there is none; undefined once closing. */
  connectionTo(authority: string): Connection | undefined {
    const existing = this.connections.get(authority)
    if (existing !== undefined && existing.state !== "closed") return existing
    if (this.closing) return undefined
    const connection = new Connection(this.connectionOwner, authority, "outbound")
    this.connections.set(authority, connection)
    const { host, port } = Result.getOrThrow(RpcAddress.parseHostPort(authority))
    const classify = (error: unknown) => this.classifyDialFailure(authority, host, error)
    const run = Effect.matchEffect(this.dial(host, port), {
      onFailure: (error) => Effect.sync(() => connection.close(classify(error), false)),
      onSuccess: (socket) => connection.run(socket, classify)
    })
    Fiber.runIn(Effect.runForkWith(this.owner.context)(this.supervise(connection, run)), this.scope)
    return connection
  }

  /** Runs a connection as one of the live ones: `close` waits for it, and it leaves the table when it ends. */
  private supervise(connection: Connection, run: Effect.Effect<void>): Effect.Effect<void> {
    const finished = Deferred.makeUnsafe<void>()
    this.live.set(connection, finished)
    return Effect.ensuring(
      run,
      Effect.sync(() => {
        connection.close({ reason: "Unreachable", detail: "the connection ended" }, false)
        this.live.delete(connection)
        Deferred.doneUnsafe(finished, Exit.void)
      })
    )
  }

  /** Dials `host:port`: the socket once it is connected (for TLS, once the handshake is through). */
  private dial(host: string, port: number): Effect.Effect<Net.Socket, unknown> {
    const tls = this.tls
    const open = Effect.callback<Net.Socket, unknown>((resume) => {
      const socket = tls === undefined ? Net.connect({ host, port, noDelay: true }) : tls.dial(host, port)
      const onError = (error: Error) => {
        socket.destroy()
        resume(Effect.fail(error))
      }
      socket.once(tls === undefined ? "connect" : "secureConnect", () => {
        // Until the connection attaches its own listener, an error must not go unheard: Node would throw it.
        socket.off("error", onError)
        socket.on("error", ignore)
        resume(Effect.succeed(socket))
      })
      socket.once("error", onError)
      return Effect.sync(() => socket.destroy())
    })
    return Effect.timeoutOrElse(open, {
      duration: this.owner.config.connectTimeout,
      orElse: () => Effect.fail(new DialTimeout())
    })
  }

  private classifyDialFailure(authority: string, host: string, error: unknown): OpenFailure {
    const code = codeOf(error)
    if (error instanceof DialTimeout) {
      return {
        reason: "Unreachable",
        detail: `no connection to ${authority} within ${Duration.format(this.owner.config.connectTimeout)}`
      }
    }
    switch (code) {
      case "ENOTFOUND":
      case "EAI_AGAIN":
      case "EAI_NONAME":
      case "EAI_FAIL":
        return { reason: "UnknownHost", detail: `the host name "${host}" cannot be resolved (${code})` }
      case "ECONNREFUSED":
        return {
          reason: "Refused",
          detail: `nothing listens on ${authority} (connection refused); is the service running on that port?`
        }
    }
    if (isTlsFailure(code)) {
      return { reason: "Untrusted", detail: `the peer at ${authority} is not trusted: ${describe(error)}` }
    }
    if (this.tls !== undefined) {
      // TLS 1.3 clients learn that the server refused their certificate only when the server hangs up.
      return {
        reason: "Untrusted",
        detail: `the peer at ${authority} closed the TLS connection before its hello (${describe(error)}): ` +
          `it does not trust this service's certificate, or requires one`
      }
    }
    return { reason: "Unreachable", detail: `cannot connect to ${authority}: ${describe(error)}` }
  }

  /** Accepts connections on `server` until the transport closes. */
  serve(server: SocketServer.SocketServer["Service"]): Effect.Effect<void> {
    return Effect.asVoid(Effect.forkIn(
      Effect.catchCause(
        server.run(() =>
          Effect.flatMap(Effect.serviceOption(NodeSocket.NetSocket), (raw) =>
            Option.isSome(raw) ? this.accept(raw.value) : Effect.die("the socket server gave no Node socket"))
        ),
        (cause) => Effect.logError("The RpcService listener failed", cause)
      ),
      this.scope
    ))
  }

  private accept(socket: Net.Socket): Effect.Effect<void> {
    if (this.closing) {
      socket.destroy()
      return Effect.void
    }
    const label = RpcAddress.formatHostPort(socket.remoteAddress ?? "?", socket.remotePort ?? 0)
    const limit = this.owner.config.maxConnections
    const tls = this.tls
    if (this.live.size + (tls?.handshaking ?? 0) >= limit) {
      this.owner.instruments.refuse("max_connections")
      const detail = `RpcService ${this.owner.serviceName} already has ${limit} connections (RpcConfig.maxConnections)`
      if (tls !== undefined) {
        // Telling a TLS peer why would take a handshake, which is what a flood must not get for free.
        socket.destroy()
        return Effect.logWarning(`Refused a connection from ${label}: ${detail}`)
      }
      const refused = new Connection(this.connectionOwner, label, "inbound")
      refused.close({ reason: "Refused", detail }, true)
      return this.supervise(refused, refused.run(socket, (error) => ({ reason: "Unreachable", detail: describe(error) })))
    }
    if (tls === undefined) return this.serveSocket(socket, label)
    return Effect.flatMap(this.handshake(tls, socket, label), (secure) =>
      secure === undefined ? Effect.void : this.serveSocket(secure, label))
  }

  private serveSocket(socket: Net.Socket, label: string): Effect.Effect<void> {
    const connection = new Connection(this.connectionOwner, label, "inbound")
    const untrusted = this.tls?.untrustedPeer(socket)
    if (untrusted !== undefined) connection.close({ reason: "Untrusted", detail: untrusted }, true)
    return this.supervise(
      connection,
      connection.run(socket, (error) => ({ reason: "Unreachable", detail: describe(error) }))
    )
  }

  /**
   * The server side of a TLS handshake over an accepted socket (./tls.ts). Undefined when it failed: the socket is
   * destroyed, and a peer without a trusted certificate learns no more than that.
   */
  private handshake(tls: TlsContext, raw: Net.Socket, label: string): Effect.Effect<Net.Socket | undefined> {
    return Effect.flatMap(tls.handshake(raw), (outcome) => {
      if (outcome._tag === "Secure") return Effect.succeed(outcome.socket)
      if (codeOf(outcome.error) === "ERR_TLS_HANDSHAKE_TIMEOUT") this.owner.instruments.refuse("handshake_timeout")
      return Effect.as(
        Effect.logDebug(`TLS handshake with ${label} failed: ${describe(outcome.error)}`).pipe(
          Effect.annotateLogs({ service: this.owner.serviceName })
        ),
        undefined
      )
    })
  }

  /** Reloads the TLS files when they change (`RpcConfig.tlsReloadInterval`), for the transport's lifetime. */
  get watchTls(): Effect.Effect<void> {
    return this.tls === undefined
      ? Effect.void
      : this.tls.watch(this.owner.config.tlsReloadInterval, this.scope).pipe(
        Effect.annotateLogs({ service: this.owner.serviceName })
      )
  }

  /** Loads the TLS files again now (tests; the watch calls it when they change). */
  get reloadTls(): Effect.Effect<void> {
    return this.tls === undefined
      ? Effect.void
      : this.tls.reload.pipe(Effect.annotateLogs({ service: this.owner.serviceName }))
  }

  /** Closes every connection (telling each peer why) and the listener; waits briefly for the goodbyes. */
  readonly close: Effect.Effect<void> = Effect.suspend(() => {
    this.closing = true
    const waits = [...this.live.values()]
    for (const connection of this.live.keys()) {
      connection.close({ reason: "Unreachable", detail: `RpcService ${this.owner.serviceName} shut down` }, true)
    }
    return Effect.forEach(waits, (finished) => Deferred.await(finished), { discard: true }).pipe(
      Effect.timeoutOption(Duration.seconds(2)),
      Effect.andThen(Scope.close(this.scope, Exit.void))
    )
  })
}

/** Starts a transport: binds the first free port of the range and starts accepting connections. */
export const make = (
  owner: TransportOwner,
  listen: ListenSettings,
  tls: TlsSettings | undefined
): Effect.Effect<Transport, RpcBindError, Scope.Scope> =>
  Effect.gen(function*() {
    const bindError = (detail: string) => new RpcBindError({ host: listen.host, portRange: listen.port, detail })
    const ports = Ports.parse(listen.port)
    if (Result.isFailure(ports)) return yield* Effect.fail(bindError(ports.failure))
    const parent = yield* Effect.scope
    const scope = yield* Scope.fork(parent, "sequential")
    const transport = new Transport(owner, tls, scope)
    const attempt = (port: number) =>
      Effect.gen(function*() {
        const child = yield* Scope.fork(scope, "sequential")
        const options = { host: listen.host, port, noDelay: true } as const
        // A plain listener for TLS too: the transport runs each handshake itself, so that it can use reloaded
        // certificates, time the handshake out and count it against maxConnections.
        return yield* NodeSocketServer.make(options).pipe(
            Scope.provide(child),
            Effect.onError(() => Scope.close(child, Exit.void)),
            Effect.mapError((error): Ports.Attempt<RpcBindError> =>
              codeOf(error.reason.cause) === "EADDRINUSE"
                ? { _tag: "Taken" }
                : { _tag: "Failed", error: bindError(describe(error.reason.cause)) }
            )
          )
      })
    const server = yield* Ports.bindFirst(
      Result.getOrThrow(ports),
      attempt,
      () => bindError(`every port of the range is taken`)
    )
    const bound = server.address
    const boundPort = bound._tag === "UnixPathAddress" ? 0 : bound.port
    const advertisedHost = listen.externalHost ??
      (listen.host === "0.0.0.0" || listen.host === "::" ? "127.0.0.1" : listen.host)
    transport.authority = RpcAddress.formatHostPort(advertisedHost, listen.externalPort ?? boundPort)
    yield* transport.serve(server)
    yield* transport.watchTls
    return transport
  })
