/**
 * The dependency check of `npm run check:deps` (run by .ci/run after the build): no value-import cycle in the
 * library. It reads the compiled build in dist/, where type-only imports are already gone, so every edge it sees
 * is one that loads a module at run time; type-only imports may point up (docs/ARCHITECTURE.md).
 * @type {import("dependency-cruiser").IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: "no-value-import-cycle",
      comment: "A module that loads, at run time, a module that loads it back: the first top-level use breaks it.",
      severity: "error",
      from: { path: "^dist/" },
      to: { circular: true }
    },
    {
      name: "definitions-load-no-transport",
      comment:
        "Gateways, endpoints, errors, addresses and configuration are definitions: they must not load sockets, TLS " +
        "or the file system (a module that only defines a protocol is imported by clients and servers alike).",
      severity: "error",
      // RpcAddress is left out: it validates IP addresses with node:net's isIPv4 / isIPv6.
      from: { path: "^dist/(RpcGateway|RpcEndpoint|RpcError|RpcConfig|RpcServer|RpcMetrics|RpcCompatibility|RpcReflection)\\.js$" },
      to: { reachable: true, path: ["^(node:)?(net|tls|fs|dgram|http|https)$", "@effect/platform-node"] }
    }
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "\\.map$" }
  }
}
