from streamwise import MLModel


class BrokenLoad(MLModel):
    async def load(self):
        raise OSError("weights.bin: no such file")
