"""Graph projection of the records (networkx embedded, Neo4j at scale) and recommendations."""
