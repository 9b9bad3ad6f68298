/**
 * The gateway compatibility checker: compares two gateway snapshots, an older and a newer, and lists what breaks in
 * each direction of a rolling upgrade. The callee reads payloads, the caller reads successes and failures; every
 * Schema is compared as a writer's layout against a reader's (layout.ts), with the rules SchemaBinary applies when
 * it decodes (see docs/PROTOCOL.md, "Gateway evolution", for the table and the evidence).
 *
 * About 800 lines, on purpose: most of it is `Comparison`, one recursive walk over two layouts whose every case
 * (struct, row, array, union, literal, wrapper, opaque) reports into the same issue list with the same path and
 * role wording; split by case, each part would need the whole walk back. What is not the walk lives beside it:
 * the layouts (layout.ts), the snapshots (snapshot.ts) and the verdict at connect (exchange.ts).
 */
import * as SchemaRepresentation from "effect/SchemaRepresentation"
import * as Layout from "./layout.js"
import type * as Snapshot from "./snapshot.js"

/** How bad an issue is. */
export type Severity = "error" | "warning" | "info"

/**
 * Which calls an issue concerns: those of old callers to new endpoints, of new callers to old endpoints, or both.
 */
export type Direction = "oldCallerToNewEndpoint" | "newCallerToOldEndpoint" | "both"

/** Who writes or reads a value. */
export type Role = "old caller" | "new caller" | "old endpoint" | "new endpoint" | "either side"

/** What an issue is about. */
export type IssueKind =
  | "GatewayRenamed"
  | "MethodRemoved"
  | "MethodAdded"
  | "KindChanged"
  | "TimeoutChanged"
  | "TokenChanged"
  | "CodecChanged"
  | "RequiredFieldAdded"
  | "RequiredFieldRemoved"
  | "FieldBecameRequired"
  | "FieldIdChanged"
  | "FieldRenamed"
  | "RecordKeyConflict"
  | "RecordEntriesDropped"
  | "TypeChanged"
  | "UnionShapeChanged"
  | "UnionMemberMissing"
  | "LiteralRemoved"
  | "ArrayShapeChanged"
  | "RowEncodingChanged"
  | "RefinementAdded"
  | "TransformationChanged"
  | "DeclarationChanged"
  | "Unrepresentable"

/** One finding of the checker. */
export interface Issue {
  /** Where: `Gateway.method.payload.field`, `Gateway.method.failure<Tag>`, `Gateway.method`, `Gateway.token`. */
  readonly path: string
  readonly kind: IssueKind
  readonly severity: Severity
  readonly direction: Direction
  /** Who writes the value (or calls, for method issues). */
  readonly writer: Role
  /** Who reads it (or serves, for method issues). */
  readonly reader: Role
  /** What happens. */
  readonly detail: string
  /** What to do. */
  readonly advice: string
}

/** One direction a Schema is read in: who writes, who reads, and which calls that concerns. */
interface Flow {
  readonly direction: Exclude<Direction, "both">
  readonly writer: Role
  readonly reader: Role
  /** Whether the writer runs the newer version (a field the reader requires was removed, not added). */
  readonly writerIsNewer: boolean
}

const PAYLOAD_FLOWS: ReadonlyArray<Flow> = [
  { direction: "oldCallerToNewEndpoint", writer: "old caller", reader: "new endpoint", writerIsNewer: false },
  { direction: "newCallerToOldEndpoint", writer: "new caller", reader: "old endpoint", writerIsNewer: true }
]

const REPLY_FLOWS: ReadonlyArray<Flow> = [
  { direction: "oldCallerToNewEndpoint", writer: "new endpoint", reader: "old caller", writerIsNewer: true },
  { direction: "newCallerToOldEndpoint", writer: "old endpoint", reader: "new caller", writerIsNewer: false }
]

/** Compares two gateway snapshots. */
export const check = (older: Snapshot.GatewaySnapshot, newer: Snapshot.GatewaySnapshot): Array<Issue> => {
  const issues: Array<Issue> = []
  const gateway = newer.gateway
  if (older.gateway !== newer.gateway) {
    issues.push({
      path: gateway,
      kind: "GatewayRenamed",
      severity: "error",
      direction: "both",
      writer: "either side",
      reader: "either side",
      detail: `the gateway was renamed from ${older.gateway} to ${newer.gateway}: a connect names the gateway, so ` +
        `each side refuses the other's with GatewayNotServed`,
      advice: `keep the name, or serve both gateways (the old under its old name) until every caller has moved`
    })
  }
  checkToken(gateway, older.token, newer.token, issues)
  const names = [...new Set([...Object.keys(older.methods), ...Object.keys(newer.methods)])].sort()
  for (const name of names) {
    const path = `${gateway}.${name}`
    const before = older.methods[name]
    const after = newer.methods[name]
    if (after === undefined) {
      issues.push({
        path,
        kind: "MethodRemoved",
        severity: "error",
        direction: "oldCallerToNewEndpoint",
        writer: "old caller",
        reader: "new endpoint",
        detail: `the new endpoint no longer serves ${name}: every call to it from an old caller fails`,
        advice: `keep the method (it may fail with a typed error saying it is retired) until no old caller is left; ` +
          `a rename is a removal plus an addition`
      })
      continue
    }
    if (before === undefined) {
      issues.push({
        path,
        kind: "MethodAdded",
        severity: "info",
        direction: "newCallerToOldEndpoint",
        writer: "new caller",
        reader: "old endpoint",
        detail: `${name} is new: an old endpoint does not serve it, so a new caller's calls to it fail as not ` +
          `served while the rest of the gateway works`,
        advice: `call it only once the endpoints are upgraded, or handle the failure`
      })
      continue
    }
    if (before.kind !== after.kind) {
      issues.push({
        path,
        kind: "KindChanged",
        severity: "error",
        direction: "both",
        writer: "either side",
        reader: "either side",
        detail: `${name} changed from ${before.kind} to ${after.kind}: an ask waits for a reply a tell never sends, ` +
          `and a tell's caller drops the reply an ask sends`,
        advice: `add a new method with the new kind and retire the old one once no peer uses it`
      })
    }
    if (before.timeoutMillis !== after.timeoutMillis) {
      issues.push({
        path,
        kind: "TimeoutChanged",
        severity: "info",
        direction: "both",
        writer: "either side",
        reader: "either side",
        detail: `the default timeout changed from ${timeoutText(before.timeoutMillis)} to ` +
          `${timeoutText(after.timeoutMillis)}; the caller's own applies to its calls, so peers may wait differently`,
        advice: `nothing to do for compatibility`
      })
    }
    for (const flow of PAYLOAD_FLOWS) {
      const [writer, reader] = flow.writerIsNewer ? [after.payload, before.payload] : [before.payload, after.payload]
      compareSchemas(`${path}.payload`, writer, reader, flow, issues)
    }
    if (before.kind === "ask" && after.kind === "ask") {
      for (const part of ["success", "failure"] as const) {
        for (const flow of REPLY_FLOWS) {
          const [writer, reader] = flow.writerIsNewer ? [after[part], before[part]] : [before[part], after[part]]
          compareSchemas(`${path}.${part}`, writer, reader, flow, issues)
        }
      }
    }
  }
  return issues
}

const timeoutText = (timeout: number | "infinity" | undefined): string =>
  timeout === undefined ? "none (the service's askTimeout)" : timeout === "infinity" ? "infinity" : `${timeout} ms`

// Fencing tokens are compared for equality at the endpoint, so any change to their Schema breaks both ways.
const checkToken = (
  gateway: string,
  before: Snapshot.SchemaSnapshot | undefined,
  after: Snapshot.SchemaSnapshot | undefined,
  issues: Array<Issue>
): void => {
  if (before === undefined && after === undefined) return
  const same = before !== undefined && after !== undefined && schemaText(before) === schemaText(after)
  if (same) return
  issues.push({
    path: `${gateway}.token`,
    kind: "TokenChanged",
    severity: "error",
    direction: "both",
    writer: "either side",
    reader: "either side",
    detail: before === undefined
      ? "the new version declares a fencing token Schema the old does not"
      : after === undefined
      ? "the new version no longer declares the old version's fencing token Schema"
      : `the fencing token Schema changed from ${before.description} to ${after.description}`,
    advice: "a token is compared for equality at the endpoint: keep its Schema, or move callers and endpoints to a " +
      "new gateway name together"
  })
}

// Structure only: annotations are documentation, except SchemaBinary's fieldId.
const schemaText = (schema: Snapshot.SchemaSnapshot): string => {
  if (schema.representation === null) return `${schema.codec}:${schema.description}`
  try {
    const document = SchemaRepresentation.fromJson(schema.representation)
    return `${schema.codec}:${Layout.stableText(Layout.strip(document.representation, Layout.resolverOf(document)))}:${
      Layout.stableText(schema.decoding ?? {})
    }`
  } catch {
    return `${schema.codec}:${Layout.stableText(schema.representation)}`
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One Schema, one direction
// ---------------------------------------------------------------------------------------------------------------

/** Where a value sits, which decides what SchemaBinary does when the reader cannot place it. */
type Position =
  /** The whole value, a union member, an Option's value...: decoded in a region of known size. */
  | "sized"
  /** A required struct field, read by its wire kind. */
  | "field"
  /** An optional struct field: a value the reader cannot place is skipped and the field is absent. */
  | "optionalField"
  /** A record (index signature) value: a value the reader cannot place is skipped with its key. */
  | "recordValue"
  /** A field of a struct in an array of structs, which SchemaBinary writes as rows with back-references. */
  | "rowField"
  | "optionalRowField"
  /** An array or tuple element. */
  | "element"
  /** A struct in an array of structs: its fields are row fields. */
  | "rowElement"

const dropsSilently = (position: Position): boolean =>
  position === "optionalField" || position === "optionalRowField" || position === "recordValue"

const inRow = (position: Position): boolean => position === "rowField" || position === "optionalRowField"

const compareSchemas = (
  base: string,
  writer: Snapshot.SchemaSnapshot,
  reader: Snapshot.SchemaSnapshot,
  flow: Flow,
  issues: Array<Issue>
): void => {
  const issue = (path: string, kind: IssueKind, severity: Severity, detail: string, advice: string) =>
    issues.push({ path: base + path, kind, severity, direction: flow.direction, writer: flow.writer, reader: flow.reader, detail, advice })
  if (writer.codec !== reader.codec) {
    issue(
      "",
      "CodecChanged",
      "error",
      `the ${flow.writer} sends ${codecText(writer.codec)} and the ${flow.reader} expects ${codecText(reader.codec)}`,
      "a plain Schema.Uint8Array crosses as raw bytes, any other Schema (even a refined Uint8Array) as SchemaBinary: " +
        "keep the Schema as it was"
    )
    return
  }
  if (writer.representation === null || reader.representation === null) {
    const same = writer.representation === null && reader.representation === null &&
      writer.description === reader.description
    issue(
      "",
      "Unrepresentable",
      same ? "info" : "error",
      same
        ? `the Schema (${reader.description}) has no SchemaRepresentation, so the checker compared its description ` +
          `only, which did not change`
        : `the Schema has no SchemaRepresentation on the ${writer.representation === null ? flow.writer : flow.reader}` +
          `'s side (${writer.representation === null ? writer.description : reader.description}), so the checker ` +
          `cannot tell whether the ${flow.reader} reads what the ${flow.writer} writes`,
      "use Schemas with a representation (Schema.Defect and Schema.declare without one have none), or test this " +
        "method's values across both versions"
    )
    return
  }
  let writerShape: Layout.Shape
  let readerShape: Layout.Shape
  try {
    writerShape = Layout.compile(SchemaRepresentation.fromJson(writer.representation))
    readerShape = Layout.compile(SchemaRepresentation.fromJson(reader.representation))
  } catch (error) {
    issue(
      "",
      "Unrepresentable",
      "error",
      `a representation in the snapshot is invalid (${error instanceof Error ? error.message : String(error)})`,
      "write the snapshot again with RpcCompatibility.snapshot"
    )
    return
  }
  new Comparison(flow, writer.decoding ?? {}, reader.decoding ?? {}, issue).value(writerShape, readerShape, "", "", "sized")
}

const codecText = (codec: "binary" | "bytes"): string => codec === "bytes" ? "raw bytes" : "SchemaBinary bytes"

type Note = typeof Snapshot.Decoding.Type

class Comparison {
  private readonly seen = new Set<string>()
  private count = 0

  constructor(
    readonly flow: Flow,
    readonly writerDecoding: Readonly<Record<string, Note>>,
    readonly readerDecoding: Readonly<Record<string, Note>>,
    readonly report: (path: string, kind: IssueKind, severity: Severity, detail: string, advice: string) => void
  ) {}

  private issue(path: string, kind: IssueKind, severity: Severity, detail: string, advice: string): void {
    this.count++
    this.report(path, kind, severity, detail, advice)
  }

  private get w() {
    return `the ${this.flow.writer}`
  }

  private get r() {
    return `the ${this.flow.reader}`
  }

  value(writer: Layout.Shape, reader: Layout.Shape, wpath: string, rpath: string, position: Position): void {
    // Nothing is ever written for Never (a method that cannot fail, say).
    if (writer._ === "never") return
    // Recursive Schemas give cyclic shapes: a pair already under comparison is assumed to match (coinduction),
    // which is sound because every difference is reported where it first appears.
    const key = `${writer.id}:${reader.id}:${position}`
    if (this.seen.has(key)) return
    this.seen.add(key)
    this.decoding(wpath, rpath)
    this.refinements(writer, reader, rpath)
    const before = this.count
    this.structure(writer, reader, wpath, rpath, position)
    if (inRow(position) && this.count === before) this.rowEncoding(writer, reader, rpath)
  }

  private refinements(writer: Layout.Shape, reader: Layout.Shape, rpath: string): void {
    const added = reader.checks.filter((check) => !writer.checks.includes(check))
    if (added.length === 0) return
    this.issue(
      rpath,
      "RefinementAdded",
      "warning",
      `${this.r} checks ${added.join(", ")}, which ${this.w} does not: a value ${this.w} accepts may fail to decode`,
      "the checker cannot prove a refinement holds: make sure every value the writer sends passes it, or relax it"
    )
  }

  private decoding(wpath: string, rpath: string): void {
    const writer = this.writerDecoding[wpath]
    const reader = this.readerDecoding[rpath]
    if (reader === undefined) return
    if (reader.decodesTo !== undefined && reader.decodesTo !== writer?.decodesTo) {
      this.issue(
        rpath,
        "TransformationChanged",
        "warning",
        `${this.r} decodes the wire value through a transformation to ${reader.decodesTo}` +
          (writer?.decodesTo === undefined ? `, which ${this.w} does not have` : ` (${this.w}: ${writer.decodesTo})`) +
          `: the wire forms agree, but the checker cannot prove the transformation accepts every value`,
      "check that every value the writer sends decodes (a test that encodes with the old Schema and decodes with " +
        "the new one), or keep the transformation unchanged"
      )
    }
    const added = (reader.checks ?? []).filter((check) => !(writer?.checks ?? []).includes(check))
    if (added.length > 0) {
      this.issue(
        rpath,
        "RefinementAdded",
        "warning",
        `${this.r} checks ${added.join(", ")} after decoding, which ${this.w} does not: a value ${this.w} accepts ` +
          `may fail to decode`,
        "the checker cannot prove a refinement holds: make sure every value the writer sends passes it, or relax it"
      )
    }
  }

  private structure(writer: Layout.Shape, reader: Layout.Shape, wpath: string, rpath: string, position: Position) {
    if (reader._ === "never") {
      return this.typeChanged(rpath, writer, reader, `${this.r} accepts no value here (Never)`)
    }
    if (writer._ === "opaque" || reader._ === "opaque") {
      if (writer._ === "opaque" && reader._ === "opaque" && writer.text === reader.text) return
      return this.issue(
        rpath,
        "DeclarationChanged",
        "error",
        `${writer._ === "opaque" ? this.w : this.r} uses ${
          writer._ === "opaque" ? writer.what : (reader as Layout.OpaqueShape).what
        }, whose binary layout the checker does not know, and the two sides differ`,
        "keep the declaration and its type parameters unchanged, or test this value across both versions"
      )
    }
    if (writer._ === "union" || reader._ === "union") {
      if (writer._ === "union" && reader._ === "union") return this.union(writer, reader, wpath, rpath, position)
      return this.issue(
        rpath,
        "UnionShapeChanged",
        "error",
        writer._ === "union"
          ? `${this.w} writes ${Layout.describeShape(writer)}, each value prefixed by a member selector, and ${this.r} ` +
            `reads ${Layout.describeShape(reader)} without one: decoding fails or misreads`
          : `${this.r} reads ${Layout.describeShape(reader)} and expects a member selector before each value, which ` +
            `${this.w}, writing ${Layout.describeShape(writer)}, does not write: decoding fails or misreads` +
            (dropsSilently(position) ? " (in an optional field the value is silently dropped)" : ""),
        "SchemaBinary writes a union of two or more members (or of tagged members) with a selector and a single type " +
          "without: a plain type cannot become a union or back. Declare a Schema that may grow as a union of tagged " +
          "members from its first version (Schema.Union([A]) of a tagged A has a selector), or add a new field"
      )
    }
    const wl = leafOf(writer)
    const rl = leafOf(reader)
    if (wl !== undefined && rl !== undefined) return this.leaf(writer, reader, wl, rl, rpath)
    if (writer._ === "struct" && reader._ === "struct") {
      return this.struct(writer, reader, wpath, rpath, position === "rowElement")
    }
    if (writer._ === "array" && reader._ === "array") return this.array(writer, reader, wpath, rpath)
    if (writer._ === "wrap" && reader._ === "wrap" && writer.wrapper === reader.wrapper) {
      writer.parts.forEach((part, i) => {
        const other = reader.parts[i]
        if (other === undefined) return
        const segment = Layout.memberSegment(part.label)
        this.value(part.shape, other.shape, wpath + segment, rpath + segment, "sized")
      })
      return
    }
    this.typeChanged(rpath, writer, reader)
  }

  private typeChanged(rpath: string, writer: Layout.Shape, reader: Layout.Shape, detail?: string): void {
    this.issue(
      rpath,
      "TypeChanged",
      "error",
      detail ?? `${this.w} writes ${Layout.describeShape(writer)} and ${this.r} reads ${Layout.describeShape(reader)}: ` +
          `decoding fails or misreads`,
      "a field's type cannot change in place: add a new field (optional) with the new type and stop writing the old " +
        "one once every reader knows the new field"
    )
  }

  private leaf(
    writer: Layout.Shape,
    reader: Layout.Shape,
    wl: Layout.LeafKind,
    rl: Layout.LeafKind,
    rpath: string
  ): void {
    // An integer is a varint, which a number reader takes; the reverse drops or misreads every fraction.
    if (wl !== rl && !(wl === "int" && rl === "number")) {
      return this.typeChanged(
        rpath,
        writer,
        reader,
        wl === "number" && rl === "int"
          ? `${this.w} writes any number and ${this.r} reads only integers (Schema.Int): a fraction or a large ` +
            `number fails to decode or is dropped`
          : undefined
      )
    }
    if (reader._ !== "literal") return
    if (writer._ !== "literal") {
      return this.typeChanged(
        rpath,
        writer,
        reader,
        `${this.w} writes ${Layout.describeShape(writer)} and ${this.r} accepts only ${Layout.describeShape(reader)}: ` +
          `any other value fails to decode`
      )
    }
    const missing = writer.values.filter((value) => !reader.values.includes(value))
    if (missing.length === 0) return
    this.issue(
      rpath,
      "LiteralRemoved",
      "error",
      `${this.w} may write ${missing.map(Layout.literalText).join(", ")}, which ${this.r} does not accept: decoding ` +
        `fails (also in an optional field: a literal is checked, not skipped)`,
      "widen the reader first: add a literal on the reading side before any writer sends it, and remove one from " +
        "the writers before the readers"
    )
  }

  private union(writer: Layout.UnionShape, reader: Layout.UnionShape, wpath: string, rpath: string, position: Position) {
    const missing = (label: string) => {
      const silent = dropsSilently(position)
      this.issue(
        rpath + Layout.memberSegment(label),
        "UnionMemberMissing",
        silent ? "warning" : "error",
        silent
          ? `${this.w} may write member ${label}, which ${this.r} does not know: SchemaBinary skips the value and ` +
            `the ${position === "recordValue" ? "record entry" : "optional field"} is silently absent on ${this.r}'s side`
          : `${this.w} may write member ${label}, which ${this.r} does not know: decoding fails (a missing value)`,
        "add the member to the readers first (a union may grow on the reading side), and let writers send it only " +
          "once every reader knows it; a member's identity is its set of required literal fields (_tag and any other)"
      )
    }
    for (const variant of writer.variants) {
      const other = reader.variants.find((v) => v.key === variant.key)
      if (other === undefined) {
        missing(variant.label)
        continue
      }
      const segment = Layout.memberSegment(variant.label)
      this.value(variant.payload, other.payload, wpath + segment, rpath + segment, "sized")
    }
    for (const row of writer.rows) {
      const other = reader.rows.find((r) => r.kind === row.kind)
      if (other === undefined) {
        missing(row.kind)
        continue
      }
      const segment = Layout.memberSegment(row.kind)
      this.value(row.shape, other.shape, wpath + segment, rpath + segment, "sized")
    }
  }

  private struct(writer: Layout.StructShape, reader: Layout.StructShape, wpath: string, rpath: string, row: boolean) {
    const byId = new Map(writer.fields.map((field) => [field.id, field]))
    const byName = new Map(writer.fields.map((field) => [field.name, field]))
    const everyKey = writer.extras.some((extra) => extra.everyKey)
    for (const field of reader.fields) {
      const path = rpath + Layout.fieldSegment(field.name)
      const written = byId.get(field.id)
      if (written === undefined) {
        const sameName = byName.get(field.name)
        if (sameName !== undefined) {
          this.issue(
            path,
            "FieldIdChanged",
            "error",
            `${this.w} writes ${field.name} under field id ${sameName.id} and ${this.r} reads it under id ${field.id}` +
              `: the value never reaches ${this.r}`,
            "SchemaBinary keys fields by SchemaBinary.fieldId or by the hash of the name: keep the id a field was " +
              "first written with"
          )
        } else if (!field.optional) {
          this.issue(
            path,
            this.flow.writerIsNewer ? "RequiredFieldRemoved" : "RequiredFieldAdded",
            "error",
            this.flow.writerIsNewer
              ? `${this.r} requires ${field.name}, which ${this.w} no longer writes: decoding fails (missing key)`
              : `${this.r} requires ${field.name}, which ${this.w} does not write: decoding fails (missing key)`,
            this.flow.writerIsNewer
              ? "make the field optional on every reader before a writer stops sending it"
              : "add a field as optional (Schema.optionalKey), or give it a decoding default " +
                "(Schema.withDecodingDefaultKey), so that a value without it still decodes"
          )
        } else if (everyKey) {
          this.issue(
            path,
            "RecordKeyConflict",
            "error",
            `${this.w} writes record entries under any key, and ${this.r} declares ${field.name} as a field: an entry ` +
              `with that key fails to decode (an extra key must differ from the declared fields)`,
            "do not declare new fields beside an index signature that matches them; nest the record in a field instead"
          )
        }
        continue
      }
      if (written.name !== field.name) {
        this.issue(
          path,
          "FieldRenamed",
          "info",
          `${written.name} is read as ${field.name}: both carry field id ${field.id}, so the rename is invisible on ` +
            `the wire`,
          "nothing to do"
        )
      }
      if (written.optional && !field.optional) {
        this.issue(
          path,
          "FieldBecameRequired",
          "error",
          `${this.r} requires ${field.name}, which ${this.w} may omit: such a value fails to decode (missing key)`,
          "keep the field optional on the reading side (or give it a decoding default) while any writer may omit it"
        )
      }
      const position: Position = row
        ? field.optional ? "optionalRowField" : "rowField"
        : field.optional
        ? "optionalField"
        : "field"
      this.value(written.shape, field.shape, wpath + Layout.fieldSegment(written.name), path, position)
    }
    for (const extra of writer.extras) {
      const other = reader.extras.find((e) => e.parameter === extra.parameter) ?? reader.extras.find((e) => e.everyKey)
      if (other === undefined) {
        this.issue(
          rpath + Layout.RECORD_SEGMENT,
          "RecordEntriesDropped",
          "warning",
          `${this.w} writes record entries (keys ${extra.parameter}) that no index signature of ${this.r} matches: ` +
            `SchemaBinary skips them silently`,
          "keep the index signature on the readers while any writer sends entries"
        )
        continue
      }
      this.value(extra.shape, other.shape, wpath + Layout.RECORD_SEGMENT, rpath + Layout.RECORD_SEGMENT, "recordValue")
    }
  }

  private array(writer: Layout.ArrayShape, reader: Layout.ArrayShape, wpath: string, rpath: string): void {
    const w = arrayForm(writer)
    const r = arrayForm(reader)
    const changed = (detail: string) =>
      this.issue(
        rpath,
        "ArrayShapeChanged",
        "error",
        detail,
        "an array's shape cannot change in place (an array stays an array, a tuple keeps its elements): add a new " +
          "field with the new shape"
      )
    if (w.counted !== r.counted) {
      return changed(
        `${w.counted ? this.w : this.r} prefixes the elements with their count (an array, or a tuple with optional ` +
          `elements) and ${w.counted ? this.r : this.w} does not: decoding fails or misreads`
      )
    }
    if (w.min < r.min || w.max > r.max) {
      return changed(
        `${this.w} writes ${rangeText(w.min, w.max)} elements and ${this.r} accepts ${rangeText(r.min, r.max)}: ` +
          `some values fail to decode`
      )
    }
    if ((w.run === undefined) !== (r.run === undefined)) {
      return changed(
        `one side writes an array of structs as rows sharing their field ids and the other element by element: ` +
          `decoding fails or misreads`
      )
    }
    if (w.run !== undefined && r.run !== undefined) {
      return this.value(w.run, r.run, wpath + Layout.REST_SEGMENT, rpath + Layout.REST_SEGMENT, "rowElement")
    }
    if (w.numbers !== r.numbers) {
      return changed(
        `${w.numbers ? this.w : this.r} writes an array of numbers as one run (a mode byte, then the numbers) and ` +
          `${w.numbers ? this.r : this.w} element by element (an array of integers, a tuple): decoding fails`
      )
    }
    const tails = writer.rest.length > 1 || reader.rest.length > 1
    if (tails && (writer.elements.length !== reader.elements.length || writer.rest.length !== reader.rest.length)) {
      return changed(`the elements after the rest element changed: decoding fails or misreads`)
    }
    const slots = Math.max(writer.elements.length, reader.elements.length)
    for (let i = 0; i < slots; i++) {
      const ws = slotAt(writer, i)
      const rs = slotAt(reader, i)
      if (ws === undefined || rs === undefined) continue
      this.slot(ws, rs, wpath + Layout.elementSegment(i), rpath + Layout.elementSegment(i), changed)
    }
    writer.rest.forEach((rest, i) => {
      const other = reader.rest[i]
      if (other === undefined) return
      const segment = i === 0 ? Layout.REST_SEGMENT : Layout.tailSegment(i)
      this.slot(rest, other, wpath + segment, rpath + segment, changed)
    })
  }

  private slot(
    writer: Layout.Shape,
    reader: Layout.Shape,
    wpath: string,
    rpath: string,
    changed: (detail: string) => void
  ): void {
    const wc = slotCategory(writer)
    const rc = slotCategory(reader)
    if (wc !== rc && writer._ !== "never") {
      return changed(
        `element ${rpath.slice(rpath.lastIndexOf("["))}: ${this.w} writes ${Layout.describeShape(writer)} and ` +
          `${this.r} reads ${Layout.describeShape(reader)}, which SchemaBinary frames differently inside an array: ` +
          `decoding fails or misreads`
      )
    }
    this.value(writer, reader, wpath, rpath, "element")
  }

  // Inside an array of structs, a string field is interned (a repeat is a back-reference), an array of strings has
  // its elements interned and a record its keys; the reader must expect the same, or the references break.
  private rowEncoding(writer: Layout.Shape, reader: Layout.Shape, rpath: string): void {
    const wk = internKind(writer)
    const rk = internKind(reader)
    if (wk === rk || (wk === "none" && (rk === "string" || rk === "keys"))) return
    this.issue(
      rpath,
      "RowEncodingChanged",
      "error",
      `in an array of structs, ${this.w} writes this field ${internText[wk]} and ${this.r} reads it ${internText[rk]}: ` +
        `repeated values or keys are misread`,
      "inside an array of structs keep a string a string, an array of strings an array of strings and a record a " +
        "record; change the field's type with a new field"
    )
  }
}

const internText = {
  none: "as plain bytes",
  string: "as an interned string",
  elements: "as an array of interned strings",
  keys: "as a record with interned keys"
} as const

const internKind = (shape: Layout.Shape): keyof typeof internText => {
  if (shape._ === "leaf" && shape.kind === "string") return "string"
  if (shape._ === "array") {
    const uniform = shape.elements.length === 0 && shape.rest.length === 1 ? shape.rest[0] : undefined
    return uniform !== undefined && uniform._ === "leaf" && uniform.kind === "string" ? "elements" : "none"
  }
  if (shape._ === "struct" && shape.extras.length > 0) return "keys"
  return "none"
}

const leafOf = (shape: Layout.Shape): Layout.LeafKind | undefined =>
  shape._ === "leaf" ? shape.kind : shape._ === "literal" ? shape.leaf : undefined

const rangeText = (min: number, max: number): string =>
  min === max ? `exactly ${min}` : max === Infinity ? `at least ${min}` : `${min} to ${max}`

interface ArrayForm {
  readonly counted: boolean
  readonly min: number
  readonly max: number
  /** The row struct, when SchemaBinary writes the array as a run of rows. */
  readonly run: Layout.Shape | undefined
  /** Whether SchemaBinary writes it as one run of numbers. */
  readonly numbers: boolean
}

const arrayForm = (shape: Layout.ArrayShape): ArrayForm => {
  const uniform = shape.elements.length === 0 && shape.rest.length === 1 ? shape.rest[0] : undefined
  const counted = shape.rest.length > 0 || shape.elements.some((e) => e.optional)
  const min = shape.elements.filter((e) => !e.optional).length + Math.max(0, shape.rest.length - 1)
  const max = shape.rest.length > 0 ? Infinity : shape.elements.length
  // SchemaBinary writes rows for Array(S) and NonEmptyArray(S) of a struct S: every slot with one struct layout.
  const rowStruct = shape.rest.length === 1 && shape.rest[0]!._ === "struct" &&
      shape.elements.every((e) => !e.optional && e.shape._ === "struct" && sameStructure(e.shape, shape.rest[0]!))
    ? shape.rest[0]
    : undefined
  return {
    counted,
    min,
    max,
    run: rowStruct,
    numbers: uniform !== undefined && uniform._ === "leaf" && uniform.kind === "number"
  }
}

// NonEmptyArray(S) repeats S's layout for its first element; a representation spells it out twice.
const sameStructure = (a: Layout.Shape, b: Layout.Shape): boolean => {
  if (a === b) return true
  if (a._ !== "struct" || b._ !== "struct") return false
  return a.fields.length === b.fields.length && a.extras.length === b.extras.length &&
    a.fields.every((f, i) => {
      const g = b.fields[i]!
      return f.id === g.id && f.optional === g.optional && f.shape._ === g.shape._
    })
}

const slotAt = (shape: Layout.ArrayShape, index: number): Layout.Shape | undefined =>
  index < shape.elements.length ? shape.elements[index]!.shape : shape.rest[0]

/** How SchemaBinary frames an element inside a tuple or array: packed, a varint, empty, or length-prefixed. */
const slotCategory = (shape: Layout.Shape): string => {
  const leaf = leafOf(shape)
  switch (leaf) {
    case "bool":
      return "one byte"
    case "int64":
      return "eight bytes"
    case "int":
      return "a varint"
    case "null":
    case "undefined":
      return "empty"
    default:
      return "sized"
  }
}
