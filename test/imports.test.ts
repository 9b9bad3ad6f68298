/**
 * What importing a module loads. A module that only defines a protocol (a gateway) is imported by clients and
 * servers alike, in any runtime: it must not load sockets, TLS, the file system or the Node platform layer. esbuild
 * follows the value imports from the entry point exactly as Node would load them (type-only imports are erased),
 * and its metafile lists every module reached. `npm run check:deps` checks the same on the build, with cycles.
 */
import { assert, describe, it } from "@effect/vitest"
import { build } from "esbuild"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

/** The modules loaded at run time by importing `entry`: our own files and the packages and builtins they import. */
const loadedBy = async (entry: string) => {
  const result = await build({
    entryPoints: [`${root}${entry}`],
    absWorkingDir: root,
    bundle: true,
    write: false,
    metafile: true,
    platform: "node",
    format: "esm",
    packages: "external",
    logLevel: "silent"
  })
  const inputs = Object.keys(result.metafile.inputs)
  const external = Object.values(result.metafile.outputs).flatMap((output) =>
    output.imports.filter((imported) => imported.external).map((imported) => imported.path)
  )
  return { inputs, external: [...new Set(external)] }
}

const forbidden = /^(node:)?(net|tls|fs|fs\/promises|dgram|http|https)$|^@effect\/platform-node/

describe("what a module loads", () => {
  // The HA modules too: they run over whichever RpcService the program provides.
  const entries = [
    "src/RpcGateway.ts",
    "src/RpcEndpoint.ts",
    "src/RpcError.ts",
    "src/RpcConfig.ts",
    "src/RpcCompatibility.ts",
    "src/RpcReflection.ts",
    "src/HaServices.ts",
    "src/HaRemote.ts"
  ]
  for (const entry of entries) {
    it(`${entry} loads no socket, TLS, file-system or Node platform module`, async () => {
      const { external, inputs } = await loadedBy(entry)
      assert.deepStrictEqual(external.filter((path) => forbidden.test(path)), [], `${entry} loads: ${external.join(", ")}`)
      for (const internal of ["transport", "connection", "tls", "service", "outbox"]) {
        assert.isFalse(inputs.includes(`src/internal/${internal}.ts`), `${entry} loads src/internal/${internal}.ts`)
      }
    })
  }

  it("the check sees what RpcService loads: the transport, TLS and the Node platform", async () => {
    const { external, inputs } = await loadedBy("src/RpcService.ts")
    assert.include(inputs, "src/internal/transport.ts")
    assert.isTrue(external.some((path) => /^(node:)?tls$/.test(path)), external.join(", "))
    assert.isTrue(external.some((path) => path.startsWith("@effect/platform-node")), external.join(", "))
  })
})
