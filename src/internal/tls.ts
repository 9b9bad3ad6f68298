/**
 * Mutual TLS for a transport: the key, certificate and CA (PEM strings or files), the server side of handshakes on
 * accepted sockets, the client side for dialled ones, fingerprint pinning, and reloading files that change.
 *
 * Accepted sockets come from a plain listener and are handed to a `tls.Server` that never listens (the acceptor):
 * Node then checks the client's certificate exactly as for its own listener, with the material of the last reload
 * and its handshake timeout, while the transport counts the handshake against `maxConnections`.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import { readFileSync, statSync } from "node:fs"
import type * as Net from "node:net"
import { isIP } from "node:net"
import * as Tls from "node:tls"
import { describe } from "./format.js"

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

const isPem = (text: string) => text.includes("-----BEGIN ")

/** Reads a PEM string, or the PEM file a path names. */
export const loadPem = (what: string, value: string | undefined): Result.Result<string, string> => {
  if (value === undefined || value === "") {
    return Result.fail(`no TLS ${what} is configured (RpcConfig.tls${what[0]!.toUpperCase()}${what.slice(1)})`)
  }
  if (isPem(value)) return Result.succeed(value)
  try {
    const text = readFileSync(value, "utf8")
    return isPem(text) ? Result.succeed(text) : Result.fail(`the TLS ${what} file ${value} holds no PEM data`)
  } catch (error) {
    return Result.fail(`cannot read the TLS ${what} file ${value} (${describe(error)})`)
  }
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

/** Does a socket error code say that TLS (a certificate, the handshake) failed? */
export const isTlsFailure = (code: string): boolean =>
  code.startsWith("ERR_TLS") || code.startsWith("ERR_SSL") || code.includes("CERT") ||
  code.startsWith("UNABLE_TO_") || code.includes("SELF_SIGNED")

/** The code of a Node error, or "". */
export const codeOf = (error: unknown): string => {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : ""
}

/** How an accepted socket's handshake ended: the secure socket, or why it failed. */
export type HandshakeOutcome =
  | { readonly _tag: "Secure"; readonly socket: Tls.TLSSocket }
  | { readonly _tag: "Failed"; readonly error: unknown }

/** The TLS side of one transport: its material in force, handshakes in progress, and reloads. */
export class TlsContext {
  /** The context in force for dialling: reloads replace it. */
  private secureContext: Tls.SecureContext
  /** Runs the server side of handshakes; reloads give it the new material too. */
  private readonly acceptor: Tls.Server
  /** The sockets in a handshake, by remote address and port, and what to do when it ends. */
  private readonly awaiting = new Map<string, (outcome: HandshakeOutcome) => void>()

  constructor(readonly settings: TlsSettings, handshakeTimeout: Duration.Duration) {
    this.secureContext = Tls.createSecureContext(settings)
    this.acceptor = Tls.createServer({
      key: settings.key,
      cert: settings.cert,
      ca: settings.ca,
      requestCert: settings.requireClientCert || settings.pinnedFingerprints.length > 0,
      rejectUnauthorized: settings.requireClientCert,
      handshakeTimeout: Duration.toMillis(handshakeTimeout)
    })
    const settle = (socket: Tls.TLSSocket, outcome: HandshakeOutcome) =>
      this.awaiting.get(`${socket.remoteAddress}|${socket.remotePort}`)?.(outcome)
    this.acceptor.on("secureConnection", (socket: Tls.TLSSocket) => settle(socket, { _tag: "Secure", socket }))
    this.acceptor.on("tlsClientError", (error, socket) => {
      // Settled first: a destroyed socket no longer knows its peer's address, which is the waiting handshake's key.
      settle(socket, { _tag: "Failed", error })
      socket.destroy()
    })
  }

  /** Accepted sockets still in their handshake: they count against `maxConnections` too. */
  get handshaking(): number {
    return this.awaiting.size
  }

  /**
   * The server side of a handshake over an accepted socket, through the acceptor. A socket whose peer hangs up, or
   * whose handshake is interrupted (the service closes), fails; the socket is then destroyed.
   */
  handshake(raw: Net.Socket): Effect.Effect<HandshakeOutcome> {
    const key = `${raw.remoteAddress}|${raw.remotePort}`
    return Effect.callback<HandshakeOutcome>((resume) => {
      const done = (outcome: HandshakeOutcome) => {
        this.awaiting.delete(key)
        resume(Effect.succeed(outcome))
      }
      this.awaiting.set(key, done)
      raw.once("close", () => this.awaiting.get(key)?.({ _tag: "Failed", error: new Error("the peer hung up") }))
      this.acceptor.emit("connection", raw)
      return Effect.sync(() => {
        this.awaiting.get(key)?.({ _tag: "Failed", error: new Error("the service is closing") })
        raw.destroy()
      })
    })
  }

  /** The client side: a TLS socket to `host:port` that checks the server's name and, if set, its pinned print. */
  dial(host: string, port: number): Tls.TLSSocket {
    const pinned = this.settings.pinnedFingerprints
    const socket = Tls.connect({
      host,
      port,
      secureContext: this.secureContext,
      // Node refuses an IP address as SNI server name; the certificate is still checked against the host.
      ...(isIP(host) === 0 ? { servername: host } : {}),
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

  /** Why an accepted peer is not trusted (its certificate is not pinned), if it is not. */
  untrustedPeer(raw: Net.Socket): string | undefined {
    const pinned = this.settings.pinnedFingerprints
    if (pinned.length === 0 || !(raw instanceof Tls.TLSSocket)) return undefined
    const fingerprint = raw.getPeerCertificate().fingerprint256
    if (fingerprint !== undefined && pinned.includes(fingerprint)) return undefined
    return `this service accepts only pinned client certificates, and ${fingerprint ?? "no certificate"} is not one`
  }

  /** Loads the material again; it applies to connections opened from now on. A bad new set is refused, logged. */
  readonly reload: Effect.Effect<void> = Effect.suspend(() => {
    const loaded = loadMaterial(this.settings.sources)
    let failure: string | undefined
    if (Result.isSuccess(loaded)) {
      try {
        const context = Tls.createSecureContext(loaded.success)
        this.acceptor.setSecureContext(loaded.success)
        this.secureContext = context
      } catch (error) {
        failure = `the new key and certificate do not form a TLS context (${describe(error)})`
      }
    } else failure = loaded.failure
    return failure === undefined
      ? Effect.logInfo("Reloaded the TLS key, certificate and CA; new connections use them")
      : Effect.logWarning(`Kept the previous TLS material: ${failure}`)
  })

  /** Reloads the files every `interval` when they have changed, on a fiber of `scope`. */
  watch(interval: Duration.Duration, scope: Scope.Scope): Effect.Effect<void> {
    const sources = this.settings.sources
    if ([sources.key, sources.cert, sources.ca].every(isPem)) return Effect.void
    const reload = this.reload
    const loop = Effect.gen(function*() {
      let last = stamp(sources)
      while (true) {
        yield* Effect.sleep(interval)
        const now = stamp(sources)
        if (now === last) continue
        last = now
        yield* reload
      }
    })
    return Effect.asVoid(Effect.forkIn(loop, scope))
  }
}
