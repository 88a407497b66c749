// Compiles src/*.sol with the pinned solcjs into out/<Contract>.json
// ({abi, bytecode}), deterministically, so `cargo build` needs no compiler and
// CI can check the committed output is current.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const sources = {};
for (const file of fs.readdirSync(path.join(__dirname, "src")).sort()) {
  if (file.endsWith(".sol")) {
    sources[file] = { content: fs.readFileSync(path.join(__dirname, "src", file), "utf8") };
  }
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    viaIR: true,
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
fs.mkdirSync(path.join(__dirname, "out"), { recursive: true });
for (const file of Object.keys(output.contracts)) {
  for (const [name, contract] of Object.entries(output.contracts[file])) {
    const artifact = { contractName: name, compiler: `solc ${solc.version()}`, abi: contract.abi,
      bytecode: "0x" + contract.evm.bytecode.object };
    fs.writeFileSync(path.join(__dirname, "out", `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
    console.log(`out/${name}.json`);
  }
}
