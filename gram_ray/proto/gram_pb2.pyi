from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Orders(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDERS_UNSPECIFIED: _ClassVar[Orders]
    ORDERS_BOTH: _ClassVar[Orders]
    ORDERS_AB: _ClassVar[Orders]

class RankStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RANK_STRATEGY_UNSPECIFIED: _ClassVar[RankStrategy]
    RANK_STRATEGY_KNOCKOUT: _ClassVar[RankStrategy]
    RANK_STRATEGY_TOURNAMENT: _ClassVar[RankStrategy]
    RANK_STRATEGY_ROUND_ROBIN: _ClassVar[RankStrategy]

class GroupScoring(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUP_SCORING_UNSPECIFIED: _ClassVar[GroupScoring]
    GROUP_SCORING_ANCHOR: _ClassVar[GroupScoring]
    GROUP_SCORING_CIRCULAR: _ClassVar[GroupScoring]
    GROUP_SCORING_ALL_PAIRS: _ClassVar[GroupScoring]
ORDERS_UNSPECIFIED: Orders
ORDERS_BOTH: Orders
ORDERS_AB: Orders
RANK_STRATEGY_UNSPECIFIED: RankStrategy
RANK_STRATEGY_KNOCKOUT: RankStrategy
RANK_STRATEGY_TOURNAMENT: RankStrategy
RANK_STRATEGY_ROUND_ROBIN: RankStrategy
GROUP_SCORING_UNSPECIFIED: GroupScoring
GROUP_SCORING_ANCHOR: GroupScoring
GROUP_SCORING_CIRCULAR: GroupScoring
GROUP_SCORING_ALL_PAIRS: GroupScoring

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("text", "conversation")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    text: str
    conversation: Conversation
    def __init__(self, text: _Optional[str] = ..., conversation: _Optional[_Union[Conversation, _Mapping]] = ...) -> None: ...

class Truncation(_message.Message):
    __slots__ = ("prompt", "response_a", "response_b")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_A_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_B_FIELD_NUMBER: _ClassVar[int]
    prompt: bool
    response_a: bool
    response_b: bool
    def __init__(self, prompt: _Optional[bool] = ..., response_a: _Optional[bool] = ..., response_b: _Optional[bool] = ...) -> None: ...

class Pair(_message.Message):
    __slots__ = ("prompt", "response_a", "response_b")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_A_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_B_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    response_a: str
    response_b: str
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., response_a: _Optional[str] = ..., response_b: _Optional[str] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("pairs", "orders", "reasoning", "votes")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[Pair]
    orders: Orders
    reasoning: bool
    votes: int
    def __init__(self, pairs: _Optional[_Iterable[_Union[Pair, _Mapping]]] = ..., orders: _Optional[_Union[Orders, str]] = ..., reasoning: _Optional[bool] = ..., votes: _Optional[int] = ...) -> None: ...

class Rationale(_message.Message):
    __slots__ = ("text", "verdict", "order")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    text: str
    verdict: str
    order: str
    def __init__(self, text: _Optional[str] = ..., verdict: _Optional[str] = ..., order: _Optional[str] = ...) -> None: ...

class PairResult(_message.Message):
    __slots__ = ("p_a_better", "p_ab", "p_ba", "truncated", "rationales", "unparsed")
    P_A_BETTER_FIELD_NUMBER: _ClassVar[int]
    P_AB_FIELD_NUMBER: _ClassVar[int]
    P_BA_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    RATIONALES_FIELD_NUMBER: _ClassVar[int]
    UNPARSED_FIELD_NUMBER: _ClassVar[int]
    p_a_better: float
    p_ab: float
    p_ba: float
    truncated: Truncation
    rationales: _containers.RepeatedCompositeFieldContainer[Rationale]
    unparsed: int
    def __init__(self, p_a_better: _Optional[float] = ..., p_ab: _Optional[float] = ..., p_ba: _Optional[float] = ..., truncated: _Optional[_Union[Truncation, _Mapping]] = ..., rationales: _Optional[_Iterable[_Union[Rationale, _Mapping]]] = ..., unparsed: _Optional[int] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PairResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PairResult, _Mapping]]] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("prompt", "responses", "strategy", "orders")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    responses: _containers.RepeatedScalarFieldContainer[str]
    strategy: RankStrategy
    orders: Orders
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., responses: _Optional[_Iterable[str]] = ..., strategy: _Optional[_Union[RankStrategy, str]] = ..., orders: _Optional[_Union[Orders, str]] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("ranking", "scores", "best_index", "comparisons")
    RANKING_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    BEST_INDEX_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    ranking: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    best_index: int
    comparisons: int
    def __init__(self, ranking: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., best_index: _Optional[int] = ..., comparisons: _Optional[int] = ...) -> None: ...

class RewardItem(_message.Message):
    __slots__ = ("prompt", "response", "reference", "group")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    response: str
    reference: str
    group: str
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., response: _Optional[str] = ..., reference: _Optional[str] = ..., group: _Optional[str] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("items", "orders", "group_scoring")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    GROUP_SCORING_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RewardItem]
    orders: Orders
    group_scoring: GroupScoring
    def __init__(self, items: _Optional[_Iterable[_Union[RewardItem, _Mapping]]] = ..., orders: _Optional[_Union[Orders, str]] = ..., group_scoring: _Optional[_Union[GroupScoring, str]] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("rewards", "p_better", "comparisons")
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    P_BETTER_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedScalarFieldContainer[float]
    p_better: _containers.RepeatedScalarFieldContainer[float]
    comparisons: int
    def __init__(self, rewards: _Optional[_Iterable[float]] = ..., p_better: _Optional[_Iterable[float]] = ..., comparisons: _Optional[int] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "model", "backbone", "adapter", "verdict_token_a", "verdict_token_b", "max_prompt_tokens", "max_response_tokens", "max_pairs_per_request", "version")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    VERDICT_TOKEN_A_FIELD_NUMBER: _ClassVar[int]
    VERDICT_TOKEN_B_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESPONSE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_PAIRS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    status: str
    model: str
    backbone: str
    adapter: str
    verdict_token_a: str
    verdict_token_b: str
    max_prompt_tokens: int
    max_response_tokens: int
    max_pairs_per_request: int
    version: str
    def __init__(self, status: _Optional[str] = ..., model: _Optional[str] = ..., backbone: _Optional[str] = ..., adapter: _Optional[str] = ..., verdict_token_a: _Optional[str] = ..., verdict_token_b: _Optional[str] = ..., max_prompt_tokens: _Optional[int] = ..., max_response_tokens: _Optional[int] = ..., max_pairs_per_request: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...
