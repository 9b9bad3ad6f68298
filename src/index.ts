/**
 * effect-actor-rpc: actor-style RPC for Effect programs, after Apache Flink's RPC framework.
 *
 * @since 0.1.0
 */

/** Leader election and retrieval errors. @since 0.1.0 */
export * as HaError from "./HaError.js"
/** One process's leader election served to others over RPC (not fault tolerant). @since 0.2.0 */
export * as HaRemote from "./HaRemote.js"
/** Leader election and retrieval: HaServices and its embedded driver. @since 0.1.0 */
export * as HaServices from "./HaServices.js"
/** The testing leader election driver, driven by a test. @since 0.1.0 */
export * as HaTesting from "./HaTesting.js"
/** What a confirmed leader publishes: address and token. @since 0.1.0 */
export * as LeaderInformation from "./LeaderInformation.js"
/** The engine-specific half of leader election, to implement an engine. @since 0.1.0 */
export * as LeaderElectionDriver from "./LeaderElectionDriver.js"
/** Ordered tokens of leadership sessions. @since 0.1.0 */
export * as LeaderToken from "./LeaderToken.js"
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
/** Reflection: a service's endpoints, gateways and Schemas, over the wire. @since 0.2.0 */
export * as RpcReflection from "./RpcReflection.js"
/** The server handle of a started endpoint. @since 0.1.0 */
export * as RpcServer from "./RpcServer.js"
/** The RpcService and its Layers. @since 0.1.0 */
export * as RpcService from "./RpcService.js"
