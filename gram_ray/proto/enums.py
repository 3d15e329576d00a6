"""The one map between the API's enums and gram-ray's names (``orders``, rank ``strategy``, reward
``group_scoring``), used by
the clients (name → enum) and the service (enum → name). UNSPECIFIED is the service's default."""

from gram_ray.proto import gram_pb2 as pb

ORDERS: dict[str, int] = {"both": pb.ORDERS_BOTH, "ab": pb.ORDERS_AB}
STRATEGIES: dict[str, int] = {
    "knockout": pb.RANK_STRATEGY_KNOCKOUT,
    "tournament": pb.RANK_STRATEGY_TOURNAMENT,
    "round_robin": pb.RANK_STRATEGY_ROUND_ROBIN,
}
GROUP_SCORINGS: dict[str, int] = {
    "anchor": pb.GROUP_SCORING_ANCHOR,
    "circular": pb.GROUP_SCORING_CIRCULAR,
    "all_pairs": pb.GROUP_SCORING_ALL_PAIRS,
}
ORDER_NAMES: dict[int, str] = {value: name for name, value in ORDERS.items()}
STRATEGY_NAMES: dict[int, str] = {value: name for name, value in STRATEGIES.items()}
GROUP_SCORING_NAMES: dict[int, str] = {value: name for name, value in GROUP_SCORINGS.items()}
DEFAULT_STRATEGY = "knockout"
DEFAULT_GROUP_SCORING = "anchor"
