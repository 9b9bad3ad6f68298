/**
 * Addresses name an endpoint: `local://serviceName/endpointId` in-process, `rpc://host:port/endpointId` over TCP
 * and `rpcs://host:port/endpointId` over TLS.
 *
 * @since 0.1.0
 */
import * as Result from "effect/Result"

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
export const format = (address: RpcAddress): string =>
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
  return Result.succeed({ protocol: match[1] as RpcAddress["protocol"], authority: match[2]!, endpointId })
}
