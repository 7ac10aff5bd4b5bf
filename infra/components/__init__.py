"""One ComponentResource per concern of the platform; `infra.program.build` wires them together."""
