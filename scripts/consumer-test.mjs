/**
 * `npm run test:package`: installs the package the way a user does and runs it in every form users run it.
 *
 * 1. `npm pack` (its prepack builds dist/), then checks the tarball: the build, the sources its maps point to,
 *    README and LICENSE; nothing from test/, bench/, examples/, docs/ or scripts/; at most MAX_TARBALL_BYTES.
 * 2. Installs the tarball with its peers into a throwaway project in the system's temporary directory, outside
 *    this repository, with `npm ci --offline`: the lock file is made from this repository's, so every package comes
 *    from the npm cache that `npm ci` filled here, at the versions the suite runs on. Nothing is downloaded.
 * 3. In that project, with no TypeScript loader and without this repository's source condition:
 *    - `node main.mjs`: two TCP RpcServices, an ask, a tell, a typed failure and a timeout whose call site names the
 *      program's file and line (scripts/consumer/main.mjs);
 *    - `npx effect-actor-rpc --help`: the command-line client, the package's bin, run through its shebang;
 *    - `node require.cjs`: CommonJS through require(esm);
 *    - `node etcd.mjs`: `effect-actor-rpc/etcd` loads etcd3 (an optional peer, installed here) and builds its driver;
 *      with etcd3 moved away, building it fails with a typed error that says what to install;
 *    - `tsc` on typed.ts under `nodenext` and under `bundler` resolution with strict user flags and
 *      `skipLibCheck: false`; the `nodenext` output then runs;
 *    - esbuild bundles of main.mjs as ESM and as CommonJS, each run.
 * The throwaway project is removed however the run ends. Run it with the project's Node (`npm run test:package`).
 */
import { spawnSync } from "node:child_process"
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, posix, relative } from "node:path"
import { fileURLToPath } from "node:url"

/**
 * The tarball's limit: 159 kB when it was set (build, maps and sources of 22 modules), 232 kB once the HA modules
 * and the etcd driver came in (29 modules), about 400 kB with the compatibility checker, the exchange at connect,
 * reflection, the command-line client (and its bin) and HA's second round (leader endpoints, clients that follow the
 * leader, HaRemote); the limit leaves some room above that.
 */
const MAX_TARBALL_BYTES = 450_000
/** Paths that must never be published. */
const UNPUBLISHED = ["test/", "bench/", "examples/", "docs/", "scripts/", ".ci/"]

const root = fileURLToPath(new URL("..", import.meta.url))
const consumerFiles = join(root, "scripts", "consumer")
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"))
const startedAt = performance.now()

const log = (line) => process.stdout.write(`${line}\n`)
const since = (start) => `${((performance.now() - start) / 1000).toFixed(1)} s`
const indent = (text) => text.trimEnd().split("\n").map((line) => `    ${line}`).join("\n")

/**
 * The environment of every command: this one's, without what `npm run` adds for this repository. NODE_OPTIONS
 * carries the source condition (.npmrc), which would send the installed package to its src/*.ts; npm_* variables
 * would point npm at this repository's prefix and configuration.
 */
const keptNpmVariables = new Set(["npm_config_cache", "npm_config_userconfig", "npm_config_globalconfig"])
const env = Object.fromEntries(
  Object.entries(process.env).filter(([name]) =>
    name !== "NODE_OPTIONS" && (!name.toLowerCase().startsWith("npm_") || keptNpmVariables.has(name))
  )
)

/** npm itself, run by this Node (the project's Node 22 under `npm run`). */
const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ["npm"]

/** Runs a command; returns its stdout, or throws with everything it printed. */
const run = (command, args, cwd, timeout = 60_000) => {
  const result = spawnSync(command, args, { cwd, env, encoding: "utf8", timeout, maxBuffer: 64 * 1024 * 1024 })
  if (result.status !== 0) {
    const how = result.error?.message ?? (result.signal ? `signal ${result.signal}` : `exit code ${result.status}`)
    throw new Error(
      `${[command, ...args].join(" ")} (in ${cwd}) failed: ${how}\n${result.stdout ?? ""}\n${result.stderr ?? ""}`
    )
  }
  return result.stdout
}

const node = (file, cwd) => run(process.execPath, [file], cwd, 30_000)

const step = async (title, body) => {
  const start = performance.now()
  const printed = await body()
  log(`✓ ${title} (${since(start)})`)
  if (printed) log(indent(printed))
}

/** Where the npm registry keeps a package's tarball: `<registry>/<name>/-/<name without scope>-<version>.tgz`. */
const registryTarball = (name, entry) =>
  `https://registry.npmjs.org/${name}/-/${name.slice(name.lastIndexOf("/") + 1)}-${entry.version}.tgz`

/** Every package the consumer's dependencies reach in this repository's lock, at the path it has there. */
const lockEntriesFor = (names) => {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"))
  const packages = lock.packages
  // Node's lookup: the nearest node_modules/<name> from the requiring package's folder up to the root.
  const locate = (from, name) => {
    let base = from
    for (;;) {
      const candidate = base === "" ? `node_modules/${name}` : `${base}/node_modules/${name}`
      if (packages[candidate] !== undefined) return candidate
      if (base === "") return undefined
      const parent = base.lastIndexOf("/node_modules/")
      base = parent === -1 ? "" : base.slice(0, parent)
    }
  }
  const entries = {}
  const visit = (from, name, optional) => {
    const path = locate(from, name)
    if (path === undefined) {
      if (optional) return
      throw new Error(`${name} (needed by ${from || "the consumer"}) is not in package-lock.json`)
    }
    if (entries[path] !== undefined) return
    const { dev: _dev, devOptional, ...entry } = packages[path]
    // Without `resolved` (this lock omits it for registry packages), npm would read the package's registry
    // document to find its tarball: another file that must be in the cache. With it, the tarball is found by
    // its integrity alone.
    const resolved = entry.resolved ?? registryTarball(path.slice(path.lastIndexOf("node_modules/") + 13), entry)
    entries[path] = { ...entry, resolved, ...(devOptional ? { optional: true } : {}) }
    for (const dependency of Object.keys(entry.dependencies ?? {})) visit(path, dependency, false)
    for (const dependency of Object.keys(entry.optionalDependencies ?? {})) visit(path, dependency, true)
    for (const dependency of Object.keys(entry.peerDependencies ?? {})) {
      visit(path, dependency, entry.peerDependenciesMeta?.[dependency]?.optional === true)
    }
  }
  for (const name of names) visit("", name, false)
  return entries
}

/** The source files a build's source maps and declaration maps point to, relative to the package root. */
const mappedSources = () => {
  const sources = new Set()
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith(".map")) {
        for (const source of JSON.parse(readFileSync(path, "utf8")).sources) {
          sources.add(relative(root, join(dirname(path), source)).split("\\").join("/"))
        }
      }
    }
  }
  walk(join(root, "dist"))
  return sources
}

const work = mkdtempSync(join(tmpdir(), "effect-actor-rpc-consumer-"))
const cleanUp = () => rmSync(work, { recursive: true, force: true })
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    cleanUp()
    process.exit(130)
  })
}

try {
  let packed
  await step("npm pack (prepack builds dist/)", () => {
    const output = run(npm[0], [...npm.slice(1), "pack", "--json", "--pack-destination", work], root)
    packed = JSON.parse(output.slice(output.indexOf("[")))[0]
    return `${packed.filename}: ${packed.size} bytes, ${packed.unpackedSize} unpacked, ${packed.entryCount} files`
  })

  await step("the tarball holds what users need and nothing else", () => {
    const files = new Set(packed.files.map((file) => file.path))
    const unpublished = [...files].filter((path) => UNPUBLISHED.some((prefix) => path.startsWith(prefix)))
    if (unpublished.length > 0) throw new Error(`the tarball holds unpublished files: ${unpublished.join(", ")}`)
    const required = ["package.json", "README.md", "LICENSE", "dist/index.js", "dist/index.d.ts", ...mappedSources()]
    const missing = required.filter((path) => !files.has(path))
    if (missing.length > 0) throw new Error(`the tarball lacks ${missing.join(", ")}`)
    if (packed.size > MAX_TARBALL_BYTES) {
      throw new Error(`the tarball is ${packed.size} bytes, over the ${MAX_TARBALL_BYTES} bytes allowed`)
    }
    const top = [...new Set([...files].map((path) => path.split("/")[0]))].sort()
    return `${top.join(", ")}; every source a map points to; ${packed.size} <= ${MAX_TARBALL_BYTES} bytes`
  })

  await step("npm ci --offline: the tarball and its peers from the npm cache", () => {
    const dependencies = {
      "effect-actor-rpc": `file:${packed.filename}`,
      ...manifest.peerDependencies,
      "@types/node": manifest.devDependencies["@types/node"]
    }
    const consumer = { name: "consumer", version: "0.0.0", private: true, type: "module", dependencies }
    const installed = {
      version: manifest.version,
      resolved: `file:${packed.filename}`,
      integrity: packed.integrity,
      license: manifest.license,
      dependencies: manifest.dependencies,
      engines: manifest.engines,
      peerDependencies: manifest.peerDependencies,
      // npm links a package's bin from its lock entry.
      bin: manifest.bin
    }
    const reached = lockEntriesFor([
      ...Object.keys(manifest.dependencies),
      ...Object.keys(manifest.peerDependencies),
      "@types/node"
    ])
    const lock = {
      name: consumer.name,
      version: consumer.version,
      lockfileVersion: 3,
      requires: true,
      packages: {
        "": { name: consumer.name, version: consumer.version, dependencies },
        "node_modules/effect-actor-rpc": installed,
        ...reached
      }
    }
    writeFileSync(join(work, "package.json"), JSON.stringify(consumer, null, 2))
    writeFileSync(join(work, "package-lock.json"), JSON.stringify(lock, null, 2))
    for (const file of ["main.mjs", "require.cjs", "typed.ts", "etcd.mjs"]) {
      cpSync(join(consumerFiles, file), join(work, file))
    }
    run(npm[0], [...npm.slice(1), "ci", "--offline", "--ignore-scripts", "--no-audit", "--no-fund"], work)
    const installedManifest = JSON.parse(readFileSync(join(work, "node_modules/effect-actor-rpc/package.json"), "utf8"))
    if (existsSync(join(work, "node_modules/effect-actor-rpc/test"))) throw new Error("test/ was installed")
    return `${Object.keys(reached).length + 1} packages in ${work}; effect-actor-rpc ${installedManifest.version}`
  })

  await step("node main.mjs (plain ESM, no TypeScript loader)", () => node("main.mjs", work))

  await step("npx effect-actor-rpc --help (the package's bin, through its shebang)", () => {
    const help = run(npm[0], [...npm.slice(1), "exec", "--offline", "--no", "--", "effect-actor-rpc", "--help"], work)
    const missing = ["ping", "list", "describe", "call", "check"].filter((command) => !help.includes(command))
    if (missing.length > 0) throw new Error(`the client's help lists no ${missing.join(", ")}:\n${help}`)
    return help.split("\n").find((line) => line.includes("effect-actor-rpc <subcommand>"))?.trim() ?? ""
  })

  await step("node require.cjs (CommonJS, require(esm))", () => node("require.cjs", work))

  await step("node etcd.mjs (effect-actor-rpc/etcd with etcd3, its optional peer, installed)", () => node("etcd.mjs", work))

  await step("node etcd.mjs missing (etcd3 moved away: a typed error says what to install)", () => {
    const installed = join(work, "node_modules", "etcd3")
    const aside = join(work, "etcd3-aside")
    renameSync(installed, aside)
    try {
      return run(process.execPath, ["etcd.mjs", "missing"], work, 30_000)
    } finally {
      renameSync(aside, installed)
    }
  })

  const strict = {
    strict: true,
    noUnusedParameters: true,
    noUnusedLocals: true,
    erasableSyntaxOnly: true,
    exactOptionalPropertyTypes: true,
    skipLibCheck: false,
    target: "ES2022",
    // Effect's own declarations name the Web Crypto types (CryptoKey), which @types/node 22 declares only inside
    // node:crypto: checking them (skipLibCheck false) needs the DOM lib, ours need nothing beyond ES2022.
    lib: ["ES2022", "DOM"],
    types: ["node"]
  }
  const tsconfigs = {
    nodenext: { ...strict, module: "nodenext", moduleResolution: "nodenext", outDir: "out-tsc" },
    bundler: { ...strict, module: "esnext", moduleResolution: "bundler", noEmit: true }
  }
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc")
  for (const [name, compilerOptions] of Object.entries(tsconfigs)) {
    await step(`tsc typed.ts, ${name} resolution, strict user flags, skipLibCheck false`, () => {
      writeFileSync(join(work, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions, files: ["typed.ts"] }))
      return run(process.execPath, [tsc, "-p", `tsconfig.${name}.json`], work)
    })
  }
  await step("node out-tsc/typed.js (the nodenext build)", () => node(posix.join("out-tsc", "typed.js"), work))

  const esbuild = await import("esbuild")
  for (const [format, extension] of [["esm", "mjs"], ["cjs", "cjs"]]) {
    const outfile = join(work, "bundle", `main.${extension}`)
    const title = `esbuild main.mjs --bundle --platform=node --format=${format}, then node bundle/main.${extension}`
    await step(title, async () => {
      mkdirSync(dirname(outfile), { recursive: true })
      const result = await esbuild.build({
        entryPoints: [join(work, "main.mjs")],
        absWorkingDir: work,
        bundle: true,
        platform: "node",
        target: "node22",
        format,
        outfile,
        logLevel: "silent"
      })
      const warnings = await esbuild.formatMessages(result.warnings, { kind: "warning" })
      return [...warnings, node(relative(work, outfile), work)].join("\n")
    })
  }
  log(`consumer test passed in ${since(startedAt)}`)
} finally {
  cleanUp()
}
