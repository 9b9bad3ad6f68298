/**
 * Runs the behaviour suite over the local, TCP and TLS transports.
 */
import { behaviourSuite } from "./behaviour.js"
import * as Transports from "./fixtures/transports.js"

for (const transport of Transports.all) behaviourSuite(transport)
