"""Who gets it: audiences as code (definitions), membership at export time with control groups and
variants, arbitration (priorities, frequency caps, exits) and the circuit breaker before a send."""
