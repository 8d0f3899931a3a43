// `node --import tsx test/helpers/train-child.ts <mlw arguments>`: the mlw CLI
// in a process of its own, for tests that kill or interrupt it.
import { main } from '../../engine/cli/main';

process.exitCode = await main(process.argv.slice(2));
