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
import { readFileSync, statSync } from "node:fs"
import * as Net from "node:net"
import * as Tls from "node:tls"
import * as RpcAddress from "../RpcAddress.js"
import type { RpcConfig } from "../RpcConfig.js"
import { describe, RpcBindError } from "../RpcError.js"
import type { ConnectionSnapshot } from "../RpcService.js"
import { Connection, type ConnectionHost, type OpenFailure } from "./connection.js"
import type { EndpointRuntime } from "./endpoint.js"
import type { Instruments } from "./metrics.js"
import * as Ports from "./ports.js"

/** TLS material, loaded. */
export interface TlsMaterial {
  readonly key: string
  readonly cert: string
  readonly ca: string
}

/** TLS material and trust settings, loaded. */
export interface TlsSettings extends TlsMaterial {
  readonly requireClientCert: boolean
  readonly pinnedFingerprints: ReadonlyArray<string>
  /** Where the material came from (a PEM string or a file path), to reload files that change. */
  readonly sources: { readonly key: string; readonly cert: string; readonly ca: string }
}

/** Loads key, certificate and CA from PEM strings or files; the first failure's message otherwise. */
export const loadMaterial = (sources: {
  readonly key: string | undefined
  readonly cert: string | undefined
  readonly ca: string | undefined
}): Result.Result<TlsMaterial, string> => {
  const key = loadPem("key", sources.key)
  if (Result.isFailure(key)) return Result.fail(key.failure)
  const cert = loadPem("cert", sources.cert)
  if (Result.isFailure(cert)) return Result.fail(cert.failure)
  const ca = loadPem("ca", sources.ca)
  if (Result.isFailure(ca)) return Result.fail(ca.failure)
  return Result.succeed({ key: key.success, cert: cert.success, ca: ca.success })
}

/** A fingerprint of the files among `sources`: it changes when any of them is rewritten. */
const stamp = (sources: TlsSettings["sources"]): string =>
  [sources.key, sources.cert, sources.ca].map((source) => {
    if (isPem(source)) return "pem"
    try {
      const stat = statSync(source)
      return `${stat.mtimeMs}:${stat.size}`
    } catch {
      return "missing"
    }
  }).join("|")

/** Where to listen and what to advertise. */
export interface ListenSettings {
  readonly host: string
  readonly port: string
  readonly externalHost: string | undefined
  readonly externalPort: number | undefined
}

/** What the transport needs from its service. */
export interface TransportHost {
  readonly serviceName: string
  readonly config: RpcConfig
  readonly lookup: (endpointId: string) => EndpointRuntime | undefined
  readonly instruments: Instruments
  readonly tracing: boolean
  /** The services dialled connections run with (the application's logger, clock, tracer). */
  readonly context: Context.Context<never>
}

const isPem = (text: string) => text.includes("-----BEGIN ")

/** Reads a PEM string, or the PEM file a path names. */
export const loadPem = (what: string, value: string | undefined): Result.Result<string, string> => {
  if (value === undefined || value === "") return Result.fail(`no TLS ${what} is configured (RpcConfig.tls${what[0]!.toUpperCase()}${what.slice(1)})`)
  if (isPem(value)) return Result.succeed(value)
  try {
    const text = readFileSync(value, "utf8")
    return isPem(text) ? Result.succeed(text) : Result.fail(`the TLS ${what} file ${value} holds no PEM data`)
  } catch (error) {
    return Result.fail(`cannot read the TLS ${what} file ${value} (${describe(error)})`)
  }
}

const codeOf = (error: unknown): string => {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : ""
}

const ignore = () => {}

/** A dial that did not connect within `RpcConfig.connectTimeout`. */
class DialTimeout {
  readonly _tag = "DialTimeout"
}

const isTlsFailure = (code: string) =>
  code.startsWith("ERR_TLS") || code.startsWith("ERR_SSL") || code.includes("CERT") ||
  code.startsWith("UNABLE_TO_") || code.includes("SELF_SIGNED")

/** The transport of one service. */
export class Transport {
  readonly protocol: "rpc" | "rpcs"
  readonly incarnation = randomUUID()
  /** This service's advertised `host:port`, known once bound. */
  authority = ""
  private closing = false
  private readonly connections = new Map<string, Connection>()
  private readonly live = new Map<Connection, Deferred.Deferred<void>>()
  private readonly connectionHost: ConnectionHost
  /** Accepted TLS sockets still in their handshake: they count against `maxConnections` too. */
  private handshaking = 0
  /** The TLS context in force for dialling: reloads replace it. */
  private secureContext: Tls.SecureContext | undefined
  /** Runs the server side of TLS handshakes (see `handshake`); reloads give it the new material too. */
  private readonly acceptor: Tls.Server | undefined
  /** The sockets in a handshake, by remote address and port, and what to do when it ends. */
  private readonly awaitingHandshake = new Map<string, (secure: Tls.TLSSocket | undefined, error?: unknown) => void>()

  constructor(
    readonly host: TransportHost,
    readonly tls: TlsSettings | undefined,
    private readonly scope: Scope.Closeable
  ) {
    this.protocol = tls === undefined ? "rpc" : "rpcs"
    if (tls !== undefined) {
      this.secureContext = Tls.createSecureContext(tls)
      const acceptor = Tls.createServer({
        key: tls.key,
        cert: tls.cert,
        ca: tls.ca,
        requestCert: tls.requireClientCert || tls.pinnedFingerprints.length > 0,
        rejectUnauthorized: tls.requireClientCert,
        handshakeTimeout: Duration.toMillis(host.config.connectTimeout)
      })
      const settle = (socket: Tls.TLSSocket, error?: unknown) =>
        this.awaitingHandshake.get(`${socket.remoteAddress}|${socket.remotePort}`)?.(error === undefined ? socket : undefined, error)
      acceptor.on("secureConnection", (socket: Tls.TLSSocket) => settle(socket))
      acceptor.on("tlsClientError", (error, socket) => {
        // Settled first: a destroyed socket no longer knows its peer's address, which is the waiting handshake's key.
        settle(socket, error)
        socket.destroy()
      })
      this.acceptor = acceptor
    }
    const transport = this
    this.connectionHost = {
      serviceName: host.serviceName,
      config: host.config,
      incarnation: this.incarnation,
      get authority() {
        return transport.authority
      },
      protocol: this.protocol,
      lookup: host.lookup,
      register: (connection, peer) => {
        const existing = this.connections.get(peer)
        if (existing === undefined || existing.state === "closed") this.connections.set(peer, connection)
      },
      unregister: (connection) => {
        for (const [peer, registered] of this.connections) {
          if (registered === connection) this.connections.delete(peer)
        }
      },
      instruments: host.instruments,
      tracing: host.tracing
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
    const connection = new Connection(this.connectionHost, authority, "outbound")
    this.connections.set(authority, connection)
    const { host, port } = Result.getOrThrow(RpcAddress.parseHostPort(authority))
    const classify = (error: unknown) => this.classifyDialFailure(authority, host, error)
    const run = Effect.matchEffect(this.dial(host, port), {
      onFailure: (error) => Effect.sync(() => connection.close(classify(error), false)),
      onSuccess: (socket) => connection.run(socket, classify)
    })
    Fiber.runIn(Effect.runForkWith(this.host.context)(this.supervise(connection, run)), this.scope)
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
      const socket = tls === undefined ? Net.connect({ host, port, noDelay: true }) : this.dialTls(host, port, tls)
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
      duration: this.host.config.connectTimeout,
      orElse: () => Effect.fail(new DialTimeout())
    })
  }

  private dialTls(host: string, port: number, tls: TlsSettings): Tls.TLSSocket {
    const pinned = tls.pinnedFingerprints
    const socket = Tls.connect({
      host,
      port,
      secureContext: this.secureContext!,
      // Node refuses an IP address as SNI server name; the certificate is still checked against the host.
      ...(Net.isIP(host) === 0 ? { servername: host } : {}),
      checkServerIdentity: (hostname, cert) => {
        const mismatch = Tls.checkServerIdentity(hostname, cert)
        if (mismatch !== undefined) return mismatch
        if (pinned.length > 0 && !pinned.includes(cert.fingerprint256)) {
          return Object.assign(
            new Error(`the peer's certificate fingerprint ${cert.fingerprint256} is not pinned`),
            { code: "ERR_TLS_CERT_NOT_PINNED" }
          )
        }
        return undefined
      }
    })
    socket.setNoDelay(true)
    return socket
  }

  private classifyDialFailure(authority: string, host: string, error: unknown): OpenFailure {
    const code = codeOf(error)
    if (error instanceof DialTimeout) {
      return {
        reason: "Unreachable",
        detail: `no connection to ${authority} within ${Duration.format(this.host.config.connectTimeout)}`
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
    const limit = this.host.config.maxConnections
    if (this.live.size + this.handshaking >= limit) {
      this.host.instruments.refuse("max_connections")
      const detail = `RpcService ${this.host.serviceName} already has ${limit} connections (RpcConfig.maxConnections)`
      if (this.tls !== undefined) {
        // Telling a TLS peer why would take a handshake, which is what a flood must not get for free.
        socket.destroy()
        return Effect.logWarning(`Refused a connection from ${label}: ${detail}`)
      }
      const refused = new Connection(this.connectionHost, label, "inbound")
      refused.close({ reason: "Refused", detail }, true)
      return this.supervise(refused, refused.run(socket, (error) => ({ reason: "Unreachable", detail: describe(error) })))
    }
    if (this.tls === undefined) return this.serveSocket(socket, label)
    return Effect.flatMap(this.handshake(socket, label), (secure) =>
      secure === undefined ? Effect.void : this.serveSocket(secure, label))
  }

  private serveSocket(socket: Net.Socket, label: string): Effect.Effect<void> {
    const connection = new Connection(this.connectionHost, label, "inbound")
    const untrusted = this.untrustedPeer(socket)
    if (untrusted !== undefined) connection.close({ reason: "Untrusted", detail: untrusted }, true)
    return this.supervise(
      connection,
      connection.run(socket, (error) => ({ reason: "Unreachable", detail: describe(error) }))
    )
  }

  /**
   * The server side of a TLS handshake over an accepted socket. The socket is handed to a `tls.Server` that never
   * listens (the acceptor): Node then checks the client's certificate exactly as for its own listener, with the
   * material set by the last reload and its handshake timeout (`connectTimeout`). Undefined when it failed: the
   * socket is destroyed, and a peer without a trusted certificate learns no more than that.
   */
  private handshake(raw: Net.Socket, label: string): Effect.Effect<Tls.TLSSocket | undefined> {
    const key = `${raw.remoteAddress}|${raw.remotePort}`
    return Effect.callback<Tls.TLSSocket | undefined>((resume) => {
      this.handshaking++
      this.awaitingHandshake.set(key, (secure, error) => {
        this.awaitingHandshake.delete(key)
        this.handshaking--
        if (secure !== undefined) return resume(Effect.succeed(secure))
        if (codeOf(error) === "ERR_TLS_HANDSHAKE_TIMEOUT") this.host.instruments.refuse("handshake_timeout")
        resume(Effect.as(
          Effect.logDebug(`TLS handshake with ${label} failed: ${describe(error)}`).pipe(
            Effect.annotateLogs({ service: this.host.serviceName })
          ),
          undefined
        ))
      })
      raw.once("close", () => this.awaitingHandshake.get(key)?.(undefined, new Error("the peer hung up")))
      this.acceptor!.emit("connection", raw)
      return Effect.sync(() => {
        this.awaitingHandshake.get(key)?.(undefined, new Error("the service is closing"))
        raw.destroy()
      })
    })
  }

  /** Reloads the TLS files every `tlsReloadInterval` when they have changed; a bad new set is refused, with a log. */
  watchTls(): Effect.Effect<void> {
    const tls = this.tls
    if (tls === undefined) return Effect.void
    const sources = tls.sources
    if ([sources.key, sources.cert, sources.ca].every(isPem)) return Effect.void
    const transport = this
    const loop = Effect.gen(function*() {
      let last = stamp(sources)
      while (true) {
        yield* Effect.sleep(transport.host.config.tlsReloadInterval)
        const now = stamp(sources)
        if (now === last) continue
        last = now
        yield* transport.reloadTls()
      }
    })
    return Effect.asVoid(Effect.forkIn(loop, this.scope))
  }

  /** Loads the TLS material again; it applies to connections opened from now on. */
  reloadTls(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const tls = this.tls!
      const loaded = loadMaterial(tls.sources)
      let failure: string | undefined
      if (Result.isSuccess(loaded)) {
        try {
          const context = Tls.createSecureContext(loaded.success)
          this.acceptor!.setSecureContext(loaded.success)
          this.secureContext = context
        } catch (error) {
          failure = `the new key and certificate do not form a TLS context (${describe(error)})`
        }
      } else failure = loaded.failure
      const log = failure === undefined
        ? Effect.logInfo("Reloaded the TLS key, certificate and CA; new connections use them")
        : Effect.logWarning(`Kept the previous TLS material: ${failure}`)
      return log.pipe(Effect.annotateLogs({ service: this.host.serviceName }))
    })
  }

  /** Why an accepted TLS peer is not trusted (its certificate is not pinned), if it is not. */
  private untrustedPeer(raw: Net.Socket): string | undefined {
    const tls = this.tls
    if (tls === undefined || tls.pinnedFingerprints.length === 0 || !(raw instanceof Tls.TLSSocket)) return undefined
    const fingerprint = raw.getPeerCertificate().fingerprint256
    if (fingerprint !== undefined && tls.pinnedFingerprints.includes(fingerprint)) return undefined
    return `this service accepts only pinned client certificates, and ${fingerprint ?? "no certificate"} is not one`
  }

  /** Closes every connection (telling each peer why) and the listener; waits briefly for the goodbyes. */
  readonly close: Effect.Effect<void> = Effect.suspend(() => {
    this.closing = true
    const waits = [...this.live.values()]
    for (const connection of this.live.keys()) {
      connection.close({ reason: "Unreachable", detail: `RpcService ${this.host.serviceName} shut down` }, true)
    }
    return Effect.forEach(waits, (finished) => Deferred.await(finished), { discard: true }).pipe(
      Effect.timeoutOption(Duration.seconds(2)),
      Effect.andThen(Scope.close(this.scope, Exit.void))
    )
  })
}

/** Starts a transport: binds the first free port of the range and starts accepting connections. */
export const make = (
  host: TransportHost,
  listen: ListenSettings,
  tls: TlsSettings | undefined
): Effect.Effect<Transport, RpcBindError, Scope.Scope> =>
  Effect.gen(function*() {
    const bindError = (detail: string) => new RpcBindError({ host: listen.host, portRange: listen.port, detail })
    const ports = Ports.parse(listen.port)
    if (Result.isFailure(ports)) return yield* Effect.fail(bindError(ports.failure))
    const parent = yield* Effect.scope
    const scope = yield* Scope.fork(parent, "sequential")
    const transport = new Transport(host, tls, scope)
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
    yield* transport.watchTls()
    return transport
  })
