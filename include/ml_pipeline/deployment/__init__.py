"""The `despliegue_modelo` stage: release the challenger, roll it out to the model API,
smoke-test it, and roll back when that fails."""
