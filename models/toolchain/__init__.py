"""Model toolchain: reads the synthetic line, trains, exports and evaluates the
reference inspection model, and writes the model package the appliance loads."""
