/**
 * effect-actor-rpc: actor-style RPC for Effect programs, after Apache Flink's RPC framework.
 *
 * @since 0.1.0
 */

/** Endpoint addresses: `local://`, `rpc://`, `rpcs://`. @since 0.1.0 */
export * as RpcAddress from "./RpcAddress.js"
/** Gateway evolution: snapshots and the compatibility checker for rolling upgrades. @since 0.1.0 */
export * as RpcCompatibility from "./RpcCompatibility.js"
/** Configuration with documented defaults. @since 0.1.0 */
export * as RpcConfig from "./RpcConfig.js"
/** Endpoints: implementations of gateways running on a serial main thread. @since 0.1.0 */
export * as RpcEndpoint from "./RpcEndpoint.js"
/** The typed errors. @since 0.1.0 */
export * as RpcError from "./RpcError.js"
/** Gateways: typed protocols and their clients. @since 0.1.0 */
export * as RpcGateway from "./RpcGateway.js"
/** The metrics an RpcService records. @since 0.1.0 */
export * as RpcMetrics from "./RpcMetrics.js"
/** The server handle of a started endpoint. @since 0.1.0 */
export * as RpcServer from "./RpcServer.js"
/** The RpcService and its Layers. @since 0.1.0 */
export * as RpcService from "./RpcService.js"
