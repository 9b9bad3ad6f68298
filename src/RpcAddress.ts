/**
 * Addresses name an endpoint: `local://serviceName/endpointId` in-process, `rpc://host:port/endpointId` over TCP
 * and `rpcs://host:port/endpointId` over TLS.
 *
 * @since 0.1.0
 */
import * as Result from "effect/Result"
import { isIPv4, isIPv6 } from "node:net"

/**
 * A parsed address.
 *
 * @since 0.1.0
 */
export interface RpcAddress {
  readonly protocol: "local" | "rpc" | "rpcs"
  /** The service name for `local`, `host:port` otherwise. */
  readonly authority: string
  readonly endpointId: string
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/**
 * Formats an address; the endpoint id is percent-encoded so that any well-formed id round-trips (a lone UTF-16
 * surrogate, which no URI can carry, becomes U+FFFD).
 *
 * @since 0.1.0
 */
export const format = (address: Pick<RpcAddress, "protocol" | "authority" | "endpointId">): string =>
  `${address.protocol}://${address.authority}/${encodeURIComponent(address.endpointId.replace(loneSurrogate, "\uFFFD"))}`

/**
 * The address of an endpoint on an in-process service.
 *
 * @since 0.1.0
 */
export const local = (serviceName: string, endpointId: string): string =>
  format({ protocol: "local", authority: serviceName, endpointId })

const pattern = /^(local|rpc|rpcs):\/\/([^/]+)\/(.+)$/

/**
 * Parses an address, or says what is wrong with it.
 *
 * @since 0.1.0
 */
export const parse = (address: string): Result.Result<RpcAddress, string> => {
  const match = pattern.exec(address)
  if (match === null) {
    return Result.fail(
      `"${address}" is not an endpoint address; expected local://service/endpointId, ` +
        `rpc://host:port/endpointId or rpcs://host:port/endpointId`
    )
  }
  let endpointId: string
  try {
    endpointId = decodeURIComponent(match[3]!)
  } catch {
    return Result.fail(`"${address}" has a malformed endpoint id`)
  }
  const protocol = match[1] as RpcAddress["protocol"]
  const authority = match[2]!
  if (protocol !== "local") {
    const hostPort = parseHostPort(authority)
    if (Result.isFailure(hostPort)) return Result.fail(`"${address}": ${hostPort.failure}`)
  }
  return Result.succeed({ protocol, authority, endpointId })
}

/**
 * A host and port, as in the authority of a remote address.
 *
 * @since 0.1.0
 */
export interface HostPort {
  /** A host name, an IPv4 address, or an IPv6 address (without brackets). */
  readonly host: string
  readonly port: number
}

// RFC 1123 labels: letters, digits and inner hyphens, at most 63 characters each.
const hostLabel = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

// A name whose last label is all digits would be read as a (malformed) IPv4 address (RFC 3696).
const isHostName = (host: string): boolean =>
  host.length > 0 && host.length <= 253 && host.split(".").every((label) => hostLabel.test(label)) &&
  !/^[0-9]+$/.test(host.slice(host.lastIndexOf(".") + 1))

/**
 * Formats `host:port`, bracketing IPv6 addresses (`[::1]:6123`).
 *
 * @since 0.1.0
 */
export const formatHostPort = (host: string, port: number): string =>
  isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`

/**
 * Parses `host:port` (IPv4, bracketed IPv6 or a host name, and a port from 1 to 65535).
 *
 * @since 0.1.0
 */
export const parseHostPort = (authority: string): Result.Result<HostPort, string> => {
  let host: string
  let portText: string
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]")
    if (close < 0 || authority[close + 1] !== ":") {
      return Result.fail(`"${authority}" is not host:port; write an IPv6 host in brackets, as in [::1]:6123`)
    }
    host = authority.slice(1, close)
    portText = authority.slice(close + 2)
    if (!isIPv6(host)) return Result.fail(`"${host}" in "${authority}" is not an IPv6 address`)
  } else {
    const colon = authority.lastIndexOf(":")
    if (colon < 0) return Result.fail(`"${authority}" has no port; expected host:port`)
    host = authority.slice(0, colon)
    portText = authority.slice(colon + 1)
    if (host.includes(":")) {
      return Result.fail(`"${authority}" looks like an IPv6 address without brackets; write [${host}]:${portText}`)
    }
    if (!isIPv4(host) && !isHostName(host)) {
      return Result.fail(`"${host}" in "${authority}" is neither an IPv4 address nor a valid host name`)
    }
  }
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN
  if (!(port >= 1 && port <= 65535)) {
    return Result.fail(`"${portText}" in "${authority}" is not a port; expected a number from 1 to 65535`)
  }
  return Result.succeed({ host, port })
}

/**
 * The address of an endpoint on a remote service: `rpc://host:port/endpointId`, or `rpcs://` with TLS.
 *
 * @since 0.1.0
 */
export const remote = (protocol: "rpc" | "rpcs", host: string, port: number, endpointId: string): string =>
  format({ protocol, authority: formatHostPort(host, port), endpointId })
